// Offline mode for the tracker (opt-in, docs/PYWASM.md "Offline mode"): when the tracker's socket
// has not been `open` for `afterMs`, this module lazily loads the engine under Pyodide
// (loader.mjs, ~5.6 MB on first use) and the last rule snapshot, and keeps adjusting the page
// locally from the events the tracker queues for the server. When the socket is `open` again it
// reverts its own patches and stops: the server takes over, and gets every event (the tracker keeps
// them; this module only reads its buffer). The tracker bundle is unchanged.
//
//   <script src="/microadjust.js" data-site="KEY" async></script>
//   <script type="module" src="/pywasm/offline.mjs" data-after-ms="3000"></script>
// or
//   import { startOffline } from "/pywasm/offline.mjs"; startOffline({ afterMs: 3000 });
//
// Needs the server's `serve --public-rules` (GET /v1/rules/snapshot) and, under a CSP,
// `script-src 'wasm-unsafe-eval'` for Pyodide. Progress is reported as `microadjust:offline`
// CustomEvents on document: {state: "idle"|"loading"|"active"|"stopped"|"error", reason?} and
// {report: {id, pseq, status, reason?, ms}} for every local patch the patcher applies or reverts.

// COUPLING: the tracker's unacked-event buffer, exactly as client_js/src/tracker.js (K_QUEUE)
// and client_js/src/batcher.js (`persist`) write it: sessionStorage "ma_q" =
// {"n": next seq, "b": [[seq, event], ...] in seq order, "d": dropped count}. e2e/pywasm-offline
// .spec.mjs fails when either side changes it.
export const BUFFER_KEY = "ma_q";
export const SNAPSHOT_KEY = "ma_offline_rules";
// PROTOCOL §3.1 kinds the server stores and evaluates; the full bundle's others are dropped
// there (`unknown_event`), so they are dropped here too.
const KINDS = new Set(["view", "hover", "scroll", "dwell", "click", "custom"]);

/**
 * The tracker's buffered events as engine input (`{...event, seq}`, in seq order), with `next`,
 * the tracker's next sequence number; null when there is no buffer or it is not in the format
 * this module knows.
 */
export function readBuffer(storage = globalThis.sessionStorage) {
  let saved;
  try {
    saved = JSON.parse(storage.getItem(BUFFER_KEY));
  } catch {
    return null;
  }
  if (!saved || typeof saved !== "object" || !Number.isSafeInteger(saved.n) || !Array.isArray(saved.b)) return null;
  const events = [];
  for (const entry of saved.b) {
    if (!Array.isArray(entry) || !Number.isSafeInteger(entry[0]) || !entry[1] || typeof entry[1].k !== "string") return null;
    events.push({ ...entry[1], seq: entry[0] });
  }
  return { next: saved.n, events };
}

/** Where the tracker is: its script tag's site key, server origin and patcher chunk. */
function trackerConfig(doc) {
  const tag = doc.querySelector("script[data-site]");
  if (!tag) return {};
  const src = tag.src || doc.baseURI;
  const endpoint = tag.getAttribute("data-endpoint");
  const server = endpoint ? new URL(endpoint.replace(/^ws/, "http"), doc.baseURI) : new URL(src, doc.baseURI);
  return {
    site: tag.getAttribute("data-site"),
    rulesURL: new URL(`/v1/rules/snapshot?site=${encodeURIComponent(tag.getAttribute("data-site"))}`, server.origin).href,
    patcherURL: new URL("microadjust-patcher.js", src).href,
  };
}

/**
 * Starts watching the tracker's connection state. Options (all optional): `afterMs` (3000),
 * `pollMs` (how often the buffer is read while active, 500), `tickMs` (time-based rules without
 * events, 2000), `rulesURL`, `patcherURL`, `indexURL` (the Pyodide build: next to this module),
 * `doc`, `storage`. Returns {state(), stop()}.
 */
export function startOffline(options = {}) {
  const doc = options.doc || document;
  const storage = options.storage || globalThis.sessionStorage;
  const cfg = { ...trackerConfig(doc), ...options };
  const afterMs = cfg.afterMs ?? 3000;
  const pollMs = cfg.pollMs ?? 500;
  const tickMs = cfg.tickMs ?? 2000;
  const indexURL = cfg.indexURL || new URL("./", import.meta.url).href;

  let state = "idle";
  let downTimer = 0; // armed while the socket is not open
  let poll = 0; // interval while active
  let engineLoad; // promise of [engine, patcher], once per page (retried after a failure)
  let patcher = null;
  let profile = null; // the local profile: only what was evaluated here
  let lastSeq = 0; // highest seq evaluated locally
  let pseq = 0; // local patch numbering (the local patcher's own)
  let lastTick = 0;
  let warned = false;

  const fire = (detail) => doc.dispatchEvent(new CustomEvent("microadjust:offline", { detail }));
  const setState = (s, reason) => {
    state = s;
    fire(reason ? { state: s, reason } : { state: s });
  };

  /** While online: the live rule set into sessionStorage (HTTP-revalidated, so cheap). */
  async function fetchSnapshot() {
    if (!cfg.rulesURL) return;
    try {
      const r = await fetch(cfg.rulesURL, { cache: "no-cache", credentials: "omit" });
      if (!r.ok) return void (warned || (warned = true, console.warn("microadjust offline: no rule snapshot:", r.status, cfg.rulesURL)));
      const text = await r.text();
      JSON.parse(text); // only a JSON document replaces the last good one
      storage.setItem(SNAPSHOT_KEY, JSON.stringify({ at: Date.now(), etag: r.headers.get("etag"), rules: text }));
    } catch {
      /* the server is unreachable: keep the last snapshot */
    }
  }

  function snapshot() {
    try {
      return JSON.parse(storage.getItem(SNAPSHOT_KEY)).rules || null;
    } catch {
      return null;
    }
  }

  const granted = () => {
    const ma = globalThis.microadjust;
    return !(ma && ma.consent && typeof ma.consent.status === "function") || ma.consent.status() === "granted";
  };

  function load() {
    return (engineLoad =
      engineLoad ||
      Promise.all([
        import(new URL("loader.mjs", indexURL).href).then((m) => m.loadEngine({ indexURL })),
        import(cfg.patcherURL).then((m) =>
          (m.create || m.createPatcher)({ report: (report) => fire({ report }) }),
        ),
      ]).catch((err) => {
        engineLoad = null;
        throw err;
      }));
  }

  async function activate() {
    downTimer = 0;
    if (state !== "idle" && state !== "stopped" && state !== "error") return;
    const rules = snapshot();
    if (!rules) return setState("error", "no_rules");
    if (!granted()) return;
    setState("loading");
    let engine;
    try {
      [engine, patcher] = await load();
    } catch (err) {
      return setState("error", `load: ${err && err.message}`);
    }
    if (state !== "loading") return; // the socket came back while loading
    setState("active");
    step(engine);
    poll = setInterval(() => step(engine), pollMs);
  }

  function apply(result) {
    for (const id of result.reverts || []) patcher.revert(id);
    for (const patch of result.patches || []) patcher.apply({ t: "patch", pseq: ++pseq, patch, causeAt: performance.now() });
  }

  function evaluate(engine, events, rules) {
    const result = engine.evaluate(profile, events, Date.now(), rules);
    profile = result.profile;
    apply(result);
  }

  /** Evaluates the buffered events not seen yet, or a tick for time-based rules. */
  function step(engine) {
    if (state !== "active") return;
    const rules = snapshot();
    const buffer = readBuffer(storage);
    if (!rules || !granted()) return;
    if (buffer && buffer.next <= lastSeq) {
      // The tracker started a new session (numbering from 1 again): a new local profile too.
      profile = null;
      lastSeq = 0;
    }
    const fresh = buffer ? buffer.events.filter((e) => e.seq > lastSeq) : [];
    if (fresh.length) lastSeq = fresh[fresh.length - 1].seq;
    const events = fresh.filter((e) => KINDS.has(e.k));
    const now = Date.now();
    if (!events.length && now - lastTick < tickMs) return;
    lastTick = now;
    try {
      evaluate(engine, events, rules);
    } catch (err) {
      // One malformed event must not stop the rest: retry one by one, skipping what fails.
      for (const event of events)
        try {
          evaluate(engine, [event], rules);
        } catch (e) {
          console.warn("microadjust offline: event not evaluated:", e && e.message);
        }
    }
  }

  function onState(s) {
    if (s === "open") {
      clearTimeout(downTimer);
      downTimer = 0;
      fetchSnapshot();
      if (state === "active" || state === "loading") {
        clearInterval(poll);
        poll = 0;
        if (patcher) patcher.revertAll(); // the server's patches replace ours
        setState("stopped");
      }
    } else if (!downTimer && state !== "active" && state !== "loading") {
      downTimer = setTimeout(activate, afterMs);
    }
  }

  const listener = (e) => onState(e.detail && e.detail.state);
  doc.addEventListener("microadjust:state", listener);
  const ma = globalThis.microadjust;
  const current = ma && typeof ma.state === "function" ? ma.state().state : "connecting";
  fetchSnapshot();
  onState(current);

  return {
    state: () => state,
    stop() {
      doc.removeEventListener("microadjust:state", listener);
      clearTimeout(downTimer);
      clearInterval(poll);
      if (patcher) patcher.revertAll();
      setState("stopped");
    },
  };
}

// As a script tag (<script type="module" src=".../offline.mjs" data-after-ms="3000">): start now.
if (typeof document !== "undefined") {
  const tag = [...document.scripts].find((s) => s.src === import.meta.url);
  if (tag) {
    const ms = (name) => {
      const v = tag.getAttribute(name);
      return v != null && /^\d+$/.test(v) ? +v : undefined;
    };
    startOffline({ afterMs: ms("data-after-ms"), pollMs: ms("data-poll-ms") });
  }
}
