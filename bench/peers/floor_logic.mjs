// The peers' shared per-connection logic (JavaScript side): the minimum a server must do for the
// benchmark workload, written once and used by the Node `ws` floor and the Socket.IO peer.
// bench/peers/floor_logic.py is the same logic line for line for the Python peers; keep them in step.
//
// What it does per message (PROTOCOL.md v1, the subset the workload exercises):
//   - parse the JSON text frame (bad_json on failure);
//   - §2.2 hello first: v == 1, site == query site, vid/sid pattern -> §2.3 welcome;
//   - §3 events: seq integer >= 1, 1..100 events, each with a known `k` and an integer `ts`;
//     (session, seq) de-duplication; a tiny per-visitor decayed-interest map (item -> [score, t]);
//   - §4 cumulative ack, then §5 a patch when a hover intent makes an item's interest cross
//     EMPHASIS_THRESHOLD (the same decision the demo's "hover-emphasis" rule makes, without the
//     rule engine, guards or store that microadjust adds on top);
//   - §6 ping -> pong; `applied` is accepted and ignored.
// The microadjust server does strictly more (full engine, guards, event log); this is the floor.

export const HALF_LIFE_MS = 1_800_000; // the demo rules' half-life: interest halves every 30 min
export const EMPHASIS_THRESHOLD = 1.0; // one hover intent of >= 2 s on a fresh item crosses it
export const INTENT_MIN_DUR = 2000; // the tracker's default intent threshold (ms)
export const MAX_ITEMS = 100; // interest entries kept per visitor, like the engine's MAX_ITEMS
export const MAX_EVENTS = 100; // PROTOCOL §2.3 limits.batch
const KINDS = new Set(["view", "hover", "scroll", "dwell", "click", "custom"]);
const ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
const WEIGHT = { hover: 1.0, click: 1.5 }; // dwell: ms / 5000 capped at 2 (engine's W_DWELL_*)

// visitor id -> Map(item -> [score, t]); shared by all connections of the process.
const visitors = new Map();

function decayed(entry, now) {
  if (!entry) return 0;
  const dt = now - entry[1];
  return dt <= 0 ? entry[0] : entry[0] * Math.pow(2, -dt / HALF_LIFE_MS);
}

function bump(items, key, weight, now) {
  const before = decayed(items.get(key), now);
  const after = before + weight;
  items.set(key, [after, now]);
  if (items.size > MAX_ITEMS) {
    let weakest = null;
    let low = Infinity;
    for (const [k, e] of items) {
      const s = decayed(e, now);
      if (s < low) { low = s; weakest = k; }
    }
    items.delete(weakest);
  }
  return [before, after];
}

const isInt = (x) => Number.isInteger(x);

// One connection's state machine. `send(text)` writes a frame, `close(code, reason)` closes.
export class FloorSession {
  constructor(site, send, close) {
    this.site = site;
    this.send = send;
    this.close = close;
    this.hello = null;
    this.ack = 0;
    this.pseq = 0;
    this.bad = 0;
  }

  error(code, detail) {
    this.send(JSON.stringify({ t: "error", code, detail }));
    if (++this.bad >= 10) this.close(4003, "too many bad messages");
  }

  onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return this.error("bad_json", "frame is not valid JSON");
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg) || typeof msg.t !== "string") {
      return this.error("bad_message", "t: expected string");
    }
    if (this.hello === null) {
      if (msg.t !== "hello") return this.close(4002, "expected hello");
      if (msg.v !== 1 || typeof msg.vid !== "string" || typeof msg.sid !== "string" ||
          !ID_RE.test(msg.vid) || !ID_RE.test(msg.sid)) {
        return this.close(4002, "bad hello: v, vid or sid");
      }
      if (msg.site !== this.site) return this.close(4005, "site mismatch");
      this.hello = msg;
      if (!visitors.has(msg.vid)) visitors.set(msg.vid, new Map());
      this.items = visitors.get(msg.vid);
      this.send(JSON.stringify({
        t: "welcome", v: 1, sid: msg.sid, ack: this.ack, hb: 25000,
        limits: { frame: 65536, batch: MAX_EVENTS },
      }));
      return;
    }
    switch (msg.t) {
      case "events": return this.onEvents(msg);
      case "ping": return this.send('{"t":"pong"}');
      case "applied": return;
      case "hello": return this.close(4002, "expected hello");
      default: return this.error("unknown_type", `t: ${String(msg.t).slice(0, 32)}`);
    }
  }

  onEvents(msg) {
    const { seq, events } = msg;
    if (!isInt(seq) || seq < 1) return this.error("bad_message", "seq: expected integer >= 1");
    if (!Array.isArray(events) || events.length < 1 || events.length > MAX_EVENTS) {
      return this.error("bad_message", "events: expected 1..100 events");
    }
    for (let i = 0; i < events.length; i++) {
      const ev = events[i];
      if (ev === null || typeof ev !== "object" || !KINDS.has(ev.k) || !isInt(ev.ts)) {
        return this.error("bad_message", `events[${i}]: expected known k and integer ts`);
      }
    }
    const now = Date.now();
    const patches = [];
    for (let i = 0; i < events.length; i++) {
      if (seq + i <= this.ack) continue; // §3 de-duplication: a resend is never counted twice
      const ev = events[i];
      if (typeof ev.item !== "string") continue;
      let weight = 0;
      if (ev.k === "hover" && ev.phase === "intent" && isInt(ev.dur) && ev.dur >= INTENT_MIN_DUR) weight = WEIGHT.hover;
      else if (ev.k === "dwell" && isInt(ev.ms)) weight = Math.min(ev.ms / 5000, 2);
      else if (ev.k === "click") weight = WEIGHT.click;
      if (weight <= 0) continue;
      const [before, after] = bump(this.items, ev.item, weight, now);
      if (ev.k === "hover" && before < EMPHASIS_THRESHOLD && after >= EMPHASIS_THRESHOLD) {
        patches.push({
          id: `hover-emphasis:${ev.item}`, rule: "hover-emphasis", target: { item: ev.item },
          ops: [{ op: "addClass", class: "ma-emphasis" }], ttl: 30000, priority: 10, cause: seq + i,
        });
      }
    }
    this.ack = Math.max(this.ack, seq + events.length - 1);
    this.send(JSON.stringify({ t: "ack", seq: this.ack }));
    for (const patch of patches) this.send(JSON.stringify({ t: "patch", pseq: ++this.pseq, patch }));
  }
}
