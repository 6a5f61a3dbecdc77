// The server's answer time at idle: one WebSocket client (Node `ws`) sends a page view, then a
// one-event hover-intent batch every `--gap` ms, and prints the time from each send to its `ack`
// and to the `patch` that follows (p50/p90 over `--count` batches). Point it at a running server:
//
//   .venv/bin/microadjust serve --demo --port 8791 --data-dir /tmp/d &
//   node bench/experiments/answer_time.mjs --port 8791 [--gap 100] [--count 40]
//
// Any server of bench/peers answers it too (acks, and patches where its logic makes them).
import WebSocket from "ws";

const arg = (n, d) => { const i = process.argv.indexOf(`--${n}`); return i >= 0 ? process.argv[i + 1] : d; };
const port = Number(arg("port", 8791));
const gap = Number(arg("gap", 100));
const count = Number(arg("count", 40));
const rand = Math.random().toString(36).slice(2, 10);
const vid = `v_answer${rand}`, sid = `s_answer${rand}`;
const items = Array.from({ length: 8 }, (_, i) => ({ key: `p${i + 1}`, tags: ["running"], slot: "grid" }));
const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream?site=demo&v=1`, { headers: { Origin: `http://127.0.0.1:${port}` } });
const acks = [], patches = [];
let seq = 1, sent = 0, t0 = 0, waiting = false;

ws.on("error", (e) => { console.error(`answer_time: ${e.message}`); process.exit(1); });
ws.on("open", () => ws.send(JSON.stringify({ t: "hello", v: 1, site: "demo", vid, sid, consent: "granted",
  page: { url: "/", title: "bench", ref: "", vw: 1280, vh: 900 }, ack: 0, pseq: 0 })));
ws.on("message", (data) => {
  const now = performance.now();
  const m = JSON.parse(data);
  if (m.t === "welcome") {
    ws.send(JSON.stringify({ t: "events", seq: seq++, events: [{ k: "view", ts: Date.now(), url: "/", title: "bench", items }] }));
  } else if (m.t === "ack") {
    if (waiting) acks.push(now - t0);
    waiting = false;
    setTimeout(next, gap);
  } else if (m.t === "patch" && sent > 0 && now - t0 < gap) {
    patches.push(now - t0);
  }
});

function next() {
  if (sent >= count) return report();
  sent++;
  waiting = true;
  t0 = performance.now();
  ws.send(JSON.stringify({ t: "events", seq: seq++, events: [{ k: "hover", ts: Date.now(), item: `p${(sent % 8) + 1}`,
    tags: ["running"], dur: 2000, phase: "intent" }] }));
}

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2) : "-";
}

function report() {
  console.log(`ack   (n=${acks.length}): p50 ${pct(acks, 0.5)} ms  p90 ${pct(acks, 0.9)} ms`);
  console.log(`patch (n=${patches.length}): p50 ${pct(patches, 0.5)} ms  p90 ${pct(patches, 0.9)} ms`);
  ws.close();
}
