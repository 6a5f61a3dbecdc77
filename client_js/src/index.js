// microadjust tracker entry: reads the script tag (config.js), asks consent (consent.js), then
// starts the signals (signals/*.js), the batcher and the stream (transport.js), hands the server's
// patches to the patcher (patcher/) and exposes `window.microadjust` (docs/TRACKER.md "API"). The
// stub snippet's queued calls are replayed in order. Nothing is recorded, stored or sent before
// consent is granted (PROTOCOL §8).
import { readConfig } from "./config.js";
import { createConsent } from "./consent.js";
import { createBatcher } from "./batcher.js";
import { createTransport } from "./transport.js";
import { createPatcher } from "./patcher/index.js";
import { costWatch } from "./cost.js";
import { get, set, del, randomId, LOCAL, SESSION } from "./store.js";
import { hover } from "./signals/hover.js";
import { scroll } from "./signals/scroll.js";
import { dwell } from "./signals/dwell.js";
import { clicks } from "./signals/clicks.js";
import { page } from "./signals/page.js";
import { items } from "./signals/items.js";
import { read } from "./signals/read.js";
import { forms } from "./signals/forms.js";
import { keys } from "./signals/keys.js";
import { pointer } from "./signals/pointer.js";

const K_VID = "ma_vid";
const K_SID = "ma_sid";
const K_QUEUE = "ma_q";
const K_PSEQ = "ma_pseq";
const K_MUTE = "ma_mute";
const CAUSES = 256; // event times remembered for event-to-paint (§5.2): a few seconds of events

/**
 * Starts the tracker. `attrs` reads an attribute by its name without `data-` (the script tag's
 * dataset for the IIFE; an options object for the ES module build).
 */
export function init(options, scriptSrc) {
  const attrs =
    typeof options === "function"
      ? options
      : (n) => {
          const v = (options || {})[n.replace(/-(\w)/g, (_, c) => c.toUpperCase())];
          return v == null ? null : String(v);
        };
  const cfg = readConfig(attrs, scriptSrc, location);
  const consent = createConsent(cfg, navigator);
  const fire = (type, detail) => document.dispatchEvent(new CustomEvent("microadjust:" + type, { detail }));
  let run = null; // the running tracker, while consent is granted
  let conn = "closed";

  const patcher = createPatcher({
    report(r) {
      if (run) {
        if (r.status === "applied" || r.status === "delegated") {
          run.pseq = Math.max(run.pseq, r.pseq);
          set(SESSION, K_PSEQ, run.pseq);
        }
        run.transport.send({ t: "applied", ...r }); // §5.2
      }
      fire("patch", r);
    },
  });

  function start() {
    if (run || !cfg.site) return;
    const vid = get(LOCAL, K_VID) || randomId("v_");
    const sid = get(SESSION, K_SID) || randomId("s_");
    set(LOCAL, K_VID, vid);
    set(SESSION, K_SID, sid);
    const muted = get(SESSION, K_MUTE) || [];
    const causes = new Map(); // seq -> performance.now() of the event
    const cleanups = [];
    const hides = [];
    const scans = [];
    const cost = MA_COST ? costWatch(scriptSrc) : { rate: () => 1, stop() {} };
    const batcher = createBatcher({
      send: (text) => transport.sendBatch(text),
      load: () => get(SESSION, K_QUEUE),
      save: (q) => set(SESSION, K_QUEUE, q),
      flushMs: cfg.flushMs,
    });
    const transport = createTransport({
      url: cfg.url,
      batcher,
      hello: () => ({
        t: "hello",
        v: 1,
        site: cfg.site,
        vid,
        sid,
        consent: "granted",
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
      onState: (s) => {
        const c = s === "open" || s === "connecting" ? s : "closed";
        if (c !== conn) fire("state", { state: (conn = c) });
      },
      onMessage(msg) {
        if (msg.t === "patch" && msg.patch) {
          patcher.apply({ ...msg, causeAt: causes.get(msg.patch.cause) });
        } else if (msg.t === "revert") {
          patcher.revert(msg.id);
        } else if (msg.t === "error") {
          // §3.1: a kind this server does not know is dropped; stop sending it for the session.
          const m = msg.code === "unknown_event" && /\b(?:kind|event)\W+([a-z_]+)/i.exec(msg.detail || "");
          if (m && muted.indexOf(m[1]) < 0) {
            muted.push(m[1]);
            set(SESSION, K_MUTE, muted);
          } else console.warn(`microadjust: server error ${msg.code}: ${msg.detail || ""}`);
        }
      },
    });

    const ctx = {
      cfg,
      rate: cost.rate,
      emit(ev, urgent) {
        if (!run || muted.indexOf(ev.k) >= 0) return;
        ev.ts = Date.now();
        const seq = batcher.push(ev, urgent);
        causes.set(seq, performance.now());
        if (causes.size > CAUSES) causes.delete(causes.keys().next().value);
      },
      on(target, type, fn, capture) {
        const opts = { passive: true, capture: !!capture };
        target.addEventListener(type, fn, opts);
        cleanups.push(() => target.removeEventListener(type, fn, opts));
      },
      onHide: (fn) => hides.push(fn),
      onStop: (fn) => cleanups.push(fn),
      onScan: (fn) => scans.push(fn),
      scan: () => scans.forEach((fn) => fn()),
    };
    const r = (run = { transport, batcher, vid, sid, pseq: get(SESSION, K_PSEQ) || 0, cleanups, items: null, emit: ctx.emit });

    // §3.2: on hide, every unacked event goes out by beacon too (same seq: the server dedupes).
    // visibilitychange and pagehide often come together: one beacon for the same events.
    let beaconed = 0;
    function hide() {
      hides.forEach((fn) => fn());
      batcher.flush();
      const st = batcher.stats();
      if (!st.pending || st.seq === beaconed) return;
      beaconed = st.seq;
      const bodies = batcher.beaconBodies({ site: cfg.site, vid, sid, consent: "granted" });
      for (const body of bodies) {
        let ok = false;
        try {
          ok = navigator.sendBeacon(cfg.beacon, new Blob([body], { type: "text/plain;charset=UTF-8" }));
        } catch (e) {
          /* fall through to fetch */
        }
        if (!ok) fetch(cfg.beacon, { method: "POST", body, keepalive: true, headers: { "content-type": "text/plain;charset=UTF-8" } }).catch(() => {});
      }
    }
    ctx.on(document, "visibilitychange", () => document.hidden && hide());
    ctx.on(window, "pagehide", (e) => {
      hide();
      // A socket left open keeps the page out of the back/forward cache; pageshow reconnects.
      if (e.persisted) transport.stop(false);
    });
    ctx.on(window, "pageshow", (e) => e.persisted && run && transport.start());
    ctx.on(window, "online", () => transport.online());
    cleanups.push(cost.stop);

    page(ctx);
    hover(ctx);
    scroll(ctx);
    dwell(ctx);
    clicks(ctx);
    r.items = items(ctx);
    if (MA_READ) read(ctx);
    if (MA_FORMS) forms(ctx);
    if (MA_KEYS) keys(ctx);
    if (MA_POINTER) pointer(ctx);
    transport.start();
  }

  function stop() {
    if (!run) return;
    const r = run;
    run = null;
    r.cleanups.forEach((fn) => fn());
    r.transport.stop(true);
    r.batcher.clear();
    patcher.revertAll();
    [K_VID, "ma_items"].forEach((k) => del(LOCAL, k));
    [K_SID, K_QUEUE, K_PSEQ, K_MUTE].forEach((k) => del(SESSION, k));
  }

  function track(name, props) {
    // PROTOCOL §3.1 `custom`: name max 64, props flat, max 32 keys, scalar values.
    let bad = typeof name !== "string" || !name || name.length > 64 ? "name must be a string of 1..64 characters" : "";
    if (!bad && props != null) {
      const ks = typeof props === "object" && !Array.isArray(props) ? Object.keys(props) : null;
      if (!ks || ks.length > 32) bad = "props must be a flat object with at most 32 keys";
      else for (const k of ks) if (props[k] !== null && typeof props[k] === "object") bad = `props.${k} must be a string, number, boolean or null`;
    }
    if (bad) {
      console.error(`microadjust.track(${JSON.stringify(String(name))}): ${bad}; event not sent`);
      return false;
    }
    if (!run) return false;
    const ev = { k: "custom", name };
    if (props) ev.props = props;
    run.emit(ev, true); // goals are urgent: they flush at once
    return true;
  }

  const api = {
    __ma: 1,
    subscribe: (slot, cb) => patcher.subscribe(slot, cb),
    track,
    flush: () => run && run.batcher.flush(),
    consent: {
      grant() {
        if (consent.grant()) start();
      },
      revoke() {
        consent.revoke();
        stop();
      },
      status: () => consent.status(),
    },
    state() {
      const s = run ? run.batcher.stats() : { seq: 0, pending: 0, acked: 0, dropped: 0 };
      return Object.assign(s, {
        state: conn,
        consent: consent.status(),
        vid: run ? run.vid : null,
        sid: run ? run.sid : null,
        items: run && run.items ? run.items.last() : [],
      });
    },
  };
  if (!cfg.site) console.error("microadjust: the script tag needs data-site=\"KEY\"; tracking is off");
  else if (consent.status() === "granted") start();
  return api;
}

/** Replays the stub snippet's queue (docs/TRACKER.md "Install"): [name, arguments] entries. */
export function replay(stub, api) {
  const q = (stub && stub.q) || [];
  for (const e of q) {
    if (e.off) continue;
    const path = e[0].split(".");
    const fn = path.length > 1 ? api[path[0]][path[1]] : api[path[0]];
    if (typeof fn !== "function") continue;
    const out = fn.apply(null, e[1]);
    if (typeof out === "function") e.u = out; // the stub's unsubscribe now calls the real one
  }
}

// The IIFE starts itself from its own script tag. An ES module has no currentScript; it finds the
// tag if the page has one, else the application calls init() itself.
const tag = typeof document !== "undefined" && (document.currentScript || document.querySelector("script[data-site]"));
if (tag && !(window.microadjust && window.microadjust.__ma)) {
  const stub = window.microadjust;
  const api = init((n) => tag.getAttribute("data-" + n), tag.src);
  window.microadjust = api;
  replay(stub, api);
}
