// The tracker: reads the script tag (config.js), asks consent (consent.js), then starts the
// signals (signals/*.js), the batcher and the stream (transport.js), hands the server's patches to
// the patcher (patcher/, fetched right after the socket's welcome: lazy.js) and builds the
// `window.microadjust` API (docs/TRACKER.md "API"). Nothing is recorded, stored or sent before
// consent is granted (PROTOCOL §8).
//
// Optional features are compile-time flags (client_js/build.mjs): MA_COST, MA_ENGAGE, MA_HISTORY,
// MA_READ, MA_FORMS, MA_KEYS, MA_POINTER. A flag that is false removes its code from the bundle.
import { readConfig } from "./config.js";
import { createConsent } from "./consent.js";
import { createBatcher } from "./batcher.js";
import { createTransport } from "./transport.js";
import { lazyPatcher } from "./lazy.js";
import { costWatch } from "./cost.js";
import { load, save, randomId, LOCAL, SESSION } from "./store.js";
import { now } from "./dom.js";
import { hover } from "./signals/hover.js";
import { scroll } from "./signals/scroll.js";
import { dwell } from "./signals/dwell.js";
import { clicks } from "./signals/clicks.js";
import { page, engage } from "./signals/page.js";
import { items, ITEMS_KEY } from "./signals/items.js";
import { read } from "./signals/read.js";
import { forms } from "./signals/forms.js";
import { keys } from "./signals/keys.js";
import { pointer } from "./signals/pointer.js";

const K_VID = "ma_vid";
const K_SID = "ma_sid";
// Set while a page holds the tab's session, removed on pagehide. Duplicating a tab copies
// sessionStorage, so a page that starts and finds it set was copied from a live page: it must not
// continue that page's session id and sequence numbers (the server would drop one tab's events as
// duplicates of the other's, PROTOCOL §3), so it starts a new session.
const K_LIVE = "ma_live";
const K_QUEUE = "ma_q";
const K_PSEQ = "ma_pseq";
const K_MUTE = "ma_mute";
const forget = () => [K_SID, K_LIVE, K_QUEUE, K_PSEQ, K_MUTE].forEach((k) => save(SESSION, k));
const CAUSES = 256; // event times remembered for event-to-paint (§5.2): a few seconds of events

/**
 * Starts the tracker. `attr(name)` reads a script tag attribute without its `data-` prefix;
 * `scriptSrc` is the script's URL (the stream's default origin, and how the cost watch finds its
 * own script time). `loadPatcher()` imports the patcher chunk (lazy.js); by default
 * microadjust-patcher.js next to `scriptSrc`.
 */
export function init(attr, scriptSrc, loadPatcher = () => import(new URL("microadjust-patcher.js", scriptSrc).href)) {
  const cfg = readConfig(attr, scriptSrc, location);
  const consent = createConsent(cfg, navigator);
  const fire = (type, detail) => document.dispatchEvent(new CustomEvent("microadjust:" + type, { detail }));
  let run = null; // the running tracker, while consent is granted
  let conn = "closed";

  const patcher = lazyPatcher(loadPatcher, {
    report(r) {
      if (run) {
        if (r.status === "applied" || r.status === "delegated") save(SESSION, K_PSEQ, (run.pseq = Math.max(run.pseq, r.pseq)));
        run.transport.send({ t: "applied", ...r }); // §5.2
      }
      fire("patch", r);
    },
  });

  function start() {
    if (run || !cfg.site) return;
    const vid = load(LOCAL, K_VID) || randomId("v_");
    let sid = load(SESSION, K_SID);
    if (!sid || load(SESSION, K_LIVE)) {
      forget(); // a new session owns nothing of the old one
      sid = randomId("s_");
    }
    save(LOCAL, K_VID, vid);
    save(SESSION, K_SID, sid);
    save(SESSION, K_LIVE, 1);
    const muted = load(SESSION, K_MUTE) || [];
    const causes = new Map(); // seq -> performance.now() of the event
    // One signal removes every listener of every signal at stop (revoke).
    const off = new AbortController();
    const cleanups = [() => off.abort()];
    const hides = [];
    const scans = [];
    const cost = MA_COST ? costWatch(scriptSrc) : { rate: () => 1 };
    const batcher = createBatcher({
      send: (text) => transport.sendBatch(text),
      load: () => load(SESSION, K_QUEUE),
      save: (q) => save(SESSION, K_QUEUE, q),
      flushMs: cfg.flushMs,
    });
    const identity = { site: cfg.site, vid, sid, consent: "granted" };
    const transport = createTransport({
      url: cfg.url,
      batcher,
      hello: () => ({
        t: "hello",
        v: 1,
        ...identity,
        page: {
          url: (location.pathname + location.search).slice(0, 2048),
          title: document.title.slice(0, 256),
          ref: document.referrer.slice(0, 2048),
          vw: innerWidth,
          vh: innerHeight,
        },
        ack: 0,
        pseq: r.pseq,
      }),
      onState(s) {
        if (s !== "connecting" && s !== "open") s = "closed";
        if (s !== conn) fire("state", { state: (conn = s) });
      },
      onMessage(msg) {
        if (msg.t === "welcome") {
          // §2.3: the server's pseq is the baseline (a refused patch is not replayed on every
          // reconnect); missed messages follow. An incomplete resume means the patches applied
          // before may be stale: revert them, the server sends what holds now.
          save(SESSION, K_PSEQ, (r.pseq = msg.pseq | 0));
          // The patcher chunk, off the critical path: a first patch then pays no fetch.
          setTimeout(patcher.warm);
          if (msg.resume && !msg.resume.complete) patcher.revertAll();
        } else if (msg.t === "patch") patcher.apply({ ...msg, causeAt: causes.get(msg.patch && msg.patch.cause) });
        else if (msg.t === "revert") patcher.revert(msg.id);
        else if (msg.t === "error") {
          // §3.1: a kind this server does not know is dropped; stop sending it for the session.
          const kind = msg.code === "unknown_event" && /kind\W+(\w+)/.exec(msg.detail);
          if (!kind) console.warn("microadjust:", msg.code, msg.detail);
          else if (muted.indexOf(kind[1]) < 0) save(SESSION, K_MUTE, muted.push(kind[1]) && muted);
        }
      },
    });

    const ctx = {
      cfg,
      rate: cost.rate,
      emit(ev, urgent) {
        if (run !== r || muted.indexOf(ev.k) >= 0) return;
        ev.ts = Date.now();
        causes.set(batcher.push(ev, urgent), now());
        if (causes.size > CAUSES) causes.delete(causes.keys().next().value);
      },
      on: (target, type, fn, capture) => target.addEventListener(type, fn, { passive: true, capture, signal: off.signal }),
      onHide: (fn) => hides.push(fn),
      onStop: (fn) => cleanups.push(fn),
      onScan: (fn) => scans.push(fn),
      scan: () => scans.forEach((fn) => fn()),
    };
    const r = (run = { transport, batcher, vid, sid, pseq: load(SESSION, K_PSEQ) || 0, cleanups, emit: ctx.emit });

    // §3.2: on hide, every unacked event goes out by beacon too (same seq: the server dedupes).
    // visibilitychange and pagehide often come together: one beacon for the same events.
    let beaconed = 0;
    function hide() {
      hides.forEach((fn) => fn());
      batcher.flush();
      const st = batcher.stats();
      if (!st.pending || st.seq === beaconed) return;
      beaconed = st.seq;
      // A string body goes as text/plain: no CORS preflight for a cross-origin endpoint.
      for (const body of batcher.beaconBodies(identity)) {
        let ok;
        try {
          ok = navigator.sendBeacon(cfg.beacon, body);
        } catch (e) {
          /* fall through to fetch */
        }
        ok || fetch(cfg.beacon, { method: "POST", body, keepalive: true }).catch(() => {});
      }
    }
    ctx.on(document, "visibilitychange", () => document.hidden && hide());
    ctx.on(window, "pagehide", (e) => {
      hide();
      save(SESSION, K_LIVE);
      // A socket left open keeps the page out of the back/forward cache; pageshow reconnects.
      if (e.persisted) transport.stop();
    });
    // Registered before the signals, so the batcher has caught up with the pages that numbered
    // the session while this one sat in the back/forward cache before the restore's view event.
    ctx.on(window, "pageshow", (e) => {
      if (e.persisted && run === r) {
        save(SESSION, K_LIVE, 1);
        batcher.restore();
        transport.start();
      }
    });
    ctx.on(window, "online", () => transport.online());
    if (MA_COST) cleanups.push(cost.stop);

    page(ctx);
    hover(ctx);
    scroll(ctx);
    dwell(ctx);
    clicks(ctx);
    if (MA_ENGAGE) engage(ctx);
    if (MA_HISTORY) r.items = items(ctx);
    if (MA_READ) read(ctx);
    if (MA_FORMS) forms(ctx);
    if (MA_KEYS) keys(ctx);
    if (MA_POINTER) pointer(ctx);
    // The socket opens at the end of the task: a `consent.revoke()` the stub queued before the
    // script loaded is replayed first (index.js) and stops the transport for good, and a stopped
    // transport opens no socket (§8).
    queueMicrotask(transport.start);
  }

  function stop() {
    if (!run) return;
    const r = run;
    run = null;
    r.cleanups.forEach((fn) => fn());
    r.transport.stop(true);
    r.batcher.clear();
    patcher.revertAll();
    save(LOCAL, K_VID);
    save(LOCAL, ITEMS_KEY);
    forget();
  }

  const api = {
    __ma: 1,
    subscribe: (slot, cb) => patcher.subscribe(slot, cb),
    /**
     * PROTOCOL §3.1 `custom`: name 1..64 chars; props flat, at most 32 keys of at most 64 chars,
     * values null, numbers, booleans or strings of at most 256 chars. Anything else is refused here:
     * the server would refuse its whole batch, which stays unacked and is resent for ever.
     */
    track(name, props) {
      const ks = props == null ? [] : typeof props == "object" && !Array.isArray(props) && Object.keys(props);
      if (
        typeof name != "string" || !name || name.length > 64 || !ks || ks.length > 32 ||
        ks.some((k, v) => k.length > 64 || ((v = props[k]), typeof v == "string" ? v.length > 256 : v !== null && !"number boolean".includes(typeof v)))
      ) {
        console.warn("microadjust: track() refused", name, props);
        return false;
      }
      if (!run) return false;
      run.emit(props ? { k: "custom", name, props: { ...props } } : { k: "custom", name }, true); // goals are urgent; a copy: a later change is not what was tracked
      return true;
    },
    flush: () => run && run.batcher.flush(),
    consent: {
      grant: () => consent.grant() && start(),
      revoke() {
        consent.revoke();
        stop();
      },
      status: consent.status,
    },
    state: () =>
      Object.assign(
        { state: conn, consent: consent.status(), seq: 0, pending: 0, acked: 0, dropped: 0, vid: null, sid: null, items: [] },
        run && { ...run.batcher.stats(), vid: run.vid, sid: run.sid, ...(MA_HISTORY && { items: run.items.last() }) },
      ),
  };
  if (!cfg.site) console.error("microadjust: no data-site");
  else if (consent.status() === "granted") start();
  return api;
}

/** Replays the stub snippet's queue (docs/TRACKER.md "Install"): [name, arguments] entries. */
export function replay(stub, api) {
  for (const e of (stub && stub.q) || []) {
    const [a, b] = e[0].split(".");
    const fn = b ? (api[a] || {})[b] : api[a];
    if (e.off || typeof fn !== "function") continue;
    const out = fn.apply(null, e[1]);
    if (typeof out === "function") e.u = out; // the stub's unsubscribe now calls the real one
  }
}
