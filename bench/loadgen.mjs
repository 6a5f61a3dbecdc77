// The load generator: N WebSocket clients speaking PROTOCOL.md v1 (hello, event batches of 10,
// acks and patches) against one server, in one of three scenarios:
//   throughput  closed loop: each connection keeps exactly one batch in flight;
//   latency     open loop: each connection sends `rate` batches/s on a fixed schedule whatever
//               the server does, and latency is measured from the *scheduled* send time, so a
//               stalled server is charged for every batch it delayed (no coordinated omission);
//   idle        connect N clients, hold; then one page-view batch each, hold (the harness reads
//               the server's RSS at each hold).
// Every loop is bounded in count and time. Prints progress markers (`MARK name t`) and, last,
// `RESULT {json}` on stdout. The harness (bench/harness.mjs) pins it to its own core.
//
//   node bench/loadgen.mjs --url 'ws://127.0.0.1:P/v1/stream?site=demo&v=1' \
//        --origin http://127.0.0.1:P --scenario latency --conns 1000 --rate 5 --duration 10

import { performance } from "node:perf_hooks";
import readline from "node:readline";
import WebSocket from "ws";
import { io } from "socket.io-client";
import { hello, makePool, render, rng, BATCH } from "./lib/workload.mjs";

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const cfg = {
  url: opt("url"),
  origin: opt("origin"),
  proto: opt("proto", "ws"), // ws | socketio
  scenario: opt("scenario", "throughput"),
  conns: Number(opt("conns", 200)),
  duration: Number(opt("duration", 10)), // s of measurement
  warmup: Number(opt("warmup", 2)), // s of load before measurement starts
  rate: Number(opt("rate", 5)), // batches/s per connection (latency)
  seed: Number(opt("seed", 42)),
  connectRate: Number(opt("connect-rate", 1000)), // new connections per second during ramp-up
  connectTimeout: Number(opt("connect-timeout", 60)), // s for the whole ramp-up
  drain: Number(opt("drain", 5)), // s to wait for outstanding acks after the last send
  hold: Number(opt("hold", 3)), // idle: s per hold when not driven by the harness
  control: opt("control", "timer"), // idle: "stdin" waits for a line from the harness per hold
};
if (!cfg.url || !cfg.origin) {
  console.error("usage: loadgen.mjs --url WS_URL --origin ORIGIN [--proto ws|socketio] [--scenario ...]");
  process.exit(2);
}

const SITE = new URL(cfg.url).searchParams.get("site") ?? "demo";
const pool = makePool(cfg.seed);
const now = () => performance.now();
const wallAt = (t) => Math.round(performance.timeOrigin + t);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mark = (name) => console.log(`MARK ${name} ${Date.now()}`);

const stats = {
  connected: 0, connectFailed: 0, closedEarly: 0, closeCodes: {},
  sent: 0, acked: 0, patches: 0, reverts: 0, errors: {}, bytesOut: 0, bytesIn: 0,
};
let measuring = false; // acks and patches count only inside the measurement window
let latencies = []; // ms, scheduled send -> ack, for batches scheduled inside the window
let sendLag = []; // ms, scheduled -> actually handed to the socket (client-side lateness)

// A transport-neutral client: raw `ws`, or Socket.IO carrying the same JSON text as "message".
function open(index, onText, onReady, onGone) {
  const url = new URL(cfg.url);
  if (cfg.proto === "socketio") {
    const base = `http://${url.host}`;
    const query = Object.fromEntries(url.searchParams);
    const s = io(base, {
      path: url.pathname, transports: ["websocket"], query, forceNew: true, reconnection: false,
      extraHeaders: { Origin: cfg.origin }, timeout: cfg.connectTimeout * 1000,
    });
    s.on("connect", () => onReady());
    s.on("message", (text) => onText(text));
    s.on("connect_error", (e) => onGone(-1, String(e?.message ?? e)));
    s.on("disconnect", (reason) => onGone(0, reason));
    return { send: (text) => s.send(text), close: () => s.disconnect() };
  }
  // perMessageDeflate is offered as browsers offer it; the server decides (PROTOCOL §1: ours declines).
  const ws = new WebSocket(url, { origin: cfg.origin, perMessageDeflate: true, handshakeTimeout: cfg.connectTimeout * 1000 });
  ws.on("open", onReady);
  ws.on("message", (data, isBinary) => onText(isBinary ? data : data.toString()));
  ws.on("error", (e) => onGone(-1, String(e?.message ?? e)));
  ws.on("close", (code, reason) => onGone(code, reason.toString()));
  return { send: (text) => ws.send(text), close: () => ws.close(1000) };
}

class Client {
  constructor(index) {
    this.index = index;
    const r = rng(cfg.seed * 7919 + index);
    // Each visitor walks the shared template pool from its own offset with its own stride.
    this.cursor = Math.floor(r() * pool.length);
    this.stride = 1 + 2 * Math.floor(r() * 64); // odd: visits every template before repeating
    // One visitor and one session per connection. (Padding the end of `...x1` to 12 characters
    // once made it `...x10`: connections 1 and 10, 2 and 20, ... shared a session.)
    this.vid = `v_bench${cfg.seed}x${String(index).padStart(6, "0")}`;
    this.sid = `s_bench${cfg.seed}x${String(index).padStart(6, "0")}`;
    this.seq = 1; // next event sequence number
    this.first = true;
    this.pending = []; // [lastSeq, scheduledTime] in send order (acks are cumulative, §4)
    this.welcomed = false;
    this.gone = false;
  }

  connect() {
    return new Promise((resolve) => {
      this.resolveWelcome = resolve;
      this.conn = open(this.index, (t) => this.onText(t), () => this.conn.send(hello(SITE, this.vid, this.sid)),
        (code, reason) => this.onGone(code, reason));
    });
  }

  onGone(code, reason) {
    if (this.gone) return;
    this.gone = true;
    if (!this.welcomed) stats.connectFailed++;
    else if (!closing) stats.closedEarly++;
    if (!closing || !this.welcomed) stats.closeCodes[`${code} ${reason}`.trim()] = (stats.closeCodes[`${code} ${reason}`.trim()] ?? 0) + 1;
    this.resolveWelcome?.(false);
    this.resolveWelcome = null;
  }

  // Sends the next batch; `scheduled` is the time it should have left (open loop) or now.
  sendBatch(scheduled) {
    if (this.gone) return;
    const tpl = this.first ? pool[0] : pool[this.cursor];
    if (!this.first) this.cursor = (this.cursor + this.stride) % pool.length;
    this.first = false;
    const text = render(tpl, this.seq, wallAt(scheduled));
    this.seq += BATCH;
    this.pending.push([this.seq - 1, scheduled]);
    const t = now();
    this.conn.send(text);
    stats.sent++;
    stats.bytesOut += text.length;
    if (measuring) sendLag.push(t - scheduled);
  }

  onText(text) {
    stats.bytesIn += text.length;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      stats.errors.unparseable = (stats.errors.unparseable ?? 0) + 1;
      return;
    }
    switch (msg.t) {
      case "welcome":
        this.welcomed = true;
        stats.connected++;
        this.resolveWelcome?.(true);
        this.resolveWelcome = null;
        return;
      case "ack": {
        const t = now();
        let n = 0;
        while (this.pending.length && this.pending[0][0] <= msg.seq) {
          const [, scheduled] = this.pending.shift();
          if (scheduled >= windowStart && scheduled < windowEnd) latencies.push(t - scheduled);
          n++;
        }
        if (measuring) stats.acked += n;
        if (n && this.onAcked) this.onAcked();
        return;
      }
      case "patch":
        if (measuring) stats.patches++;
        return;
      case "revert":
        if (measuring) stats.reverts++;
        return;
      case "error":
        stats.errors[msg.code] = (stats.errors[msg.code] ?? 0) + 1;
        // A rejected batch is not acked (§7): in closed loop, move on so the connection keeps one in flight.
        if (this.onRejected) this.onRejected();
        return;
      default:
        return;
    }
  }
}

let closing = false;
let windowStart = Infinity;
let windowEnd = -Infinity;

async function connectAll(n) {
  const clients = Array.from({ length: n }, (_, i) => new Client(i));
  const deadline = now() + cfg.connectTimeout * 1000;
  const gap = 1000 / cfg.connectRate;
  const waits = [];
  const t0 = now();
  for (let i = 0; i < n && now() < deadline; i++) {
    const due = t0 + i * gap;
    if (due > now()) await sleep(due - now());
    waits.push(clients[i].connect());
  }
  await Promise.race([Promise.all(waits), sleep(Math.max(0, deadline - now()))]);
  return clients.filter((c) => c.welcomed && !c.gone);
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

function summarise(arr) {
  const s = Float64Array.from(arr).sort();
  const r = (x) => (x === null || !Number.isFinite(x) ? x : Math.round(x * 1000) / 1000);
  return {
    n: s.length,
    p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)),
    p999: r(percentile(s, 99.9)), max: r(s.length ? s[s.length - 1] : null),
    mean: r(s.length ? s.reduce((a, b) => a + b, 0) / s.length : null),
  };
}

async function drain(clients) {
  const until = now() + cfg.drain * 1000;
  while (now() < until && clients.some((c) => !c.gone && c.pending.length)) await sleep(10);
}

async function runThroughput(clients) {
  let stop = false;
  for (const c of clients) {
    const next = () => { if (!stop && c.pending.length === 0) c.sendBatch(now()); };
    c.onAcked = next;
    c.onRejected = () => { c.pending.shift(); c.seq -= BATCH; setTimeout(next, 100); };
  }
  const t0 = now();
  windowStart = t0 + cfg.warmup * 1000;
  windowEnd = windowStart + cfg.duration * 1000;
  for (const c of clients) c.sendBatch(now());
  await sleep(windowStart - now());
  measuring = true;
  mark("measure_start");
  await sleep(windowEnd - now());
  measuring = false;
  mark("measure_end");
  stop = true;
  await drain(clients);
}

async function runLatency(clients) {
  const period = 1000 / cfg.rate;
  const r = rng(cfg.seed + 1);
  const t0 = now() + 50;
  windowStart = t0 + cfg.warmup * 1000;
  windowEnd = windowStart + cfg.duration * 1000;
  // Each connection gets a random phase inside the period so that load is spread evenly.
  const next = clients.map(() => t0 + r() * period);
  let measureMarked = false;
  await new Promise((resolve) => {
    const tick = () => {
      const t = now();
      if (!measureMarked && t >= windowStart) { measuring = true; measureMarked = true; mark("measure_start"); }
      if (t >= windowEnd) {
        measuring = false;
        mark("measure_end");
        resolve();
        return;
      }
      for (let i = 0; i < clients.length; i++) {
        // Bounded catch-up: at most a few late batches per tick per connection, all stamped
        // with their own scheduled time.
        for (let k = 0; k < 4 && next[i] <= t && next[i] < windowEnd; k++) {
          clients[i].sendBatch(next[i]);
          next[i] += period;
        }
      }
      setTimeout(tick, 1);
    };
    tick();
  });
  await drain(clients);
  // Batches scheduled in the window that never got an ack count as infinitely late.
  for (const c of clients) for (const [, scheduled] of c.pending) {
    if (scheduled >= windowStart && scheduled < windowEnd) latencies.push(Infinity);
  }
}

async function hold(label, extra) {
  console.log(`READY ${label} ${JSON.stringify(extra)}`);
  if (cfg.control === "stdin") {
    await new Promise((resolve) => stdinLines.once("line", resolve));
  } else {
    await sleep(cfg.hold * 1000);
  }
}

const stdinLines = cfg.control === "stdin" ? readline.createInterface({ input: process.stdin }) : null;

async function runIdle(clients) {
  await hold("connected", { conns: clients.filter((c) => !c.gone).length });
  // One page-view batch each, spread over a second, so every visitor has a profile on the server.
  const gap = 1000 / Math.max(1, clients.length);
  for (let i = 0; i < clients.length; i++) {
    clients[i].sendBatch(now());
    if (i % 50 === 49) await sleep(gap * 50);
  }
  measuring = true;
  windowStart = -Infinity;
  windowEnd = Infinity;
  await drain(clients);
  measuring = false;
  await hold("viewed", { conns: clients.filter((c) => !c.gone).length, acked: stats.acked });
}

async function main() {
  const cpu0 = process.cpuUsage();
  const w0 = now();
  mark("connect_start");
  const clients = await connectAll(cfg.conns);
  mark("connected");
  const rampMs = now() - w0;
  const cpuR = process.cpuUsage();
  const wR = now();
  if (cfg.scenario === "throughput") await runThroughput(clients);
  else if (cfg.scenario === "latency") await runLatency(clients);
  else if (cfg.scenario === "idle") await runIdle(clients);
  else throw new Error(`unknown scenario ${cfg.scenario}`);
  const cpu = process.cpuUsage(cpuR);
  const wall = now() - wR;
  closing = true;
  for (const c of clients) if (!c.gone) c.conn.close();
  const lat = summarise(latencies);
  const result = {
    scenario: cfg.scenario, proto: cfg.proto, conns: cfg.conns, connected: clients.length,
    duration_s: cfg.duration, warmup_s: cfg.warmup, rate: cfg.scenario === "latency" ? cfg.rate : null,
    ramp_ms: Math.round(rampMs), ...stats,
    batches_per_s: cfg.scenario === "idle" ? null : Math.round(stats.acked / cfg.duration),
    events_per_s: cfg.scenario === "idle" ? null : Math.round((stats.acked * BATCH) / cfg.duration),
    latency_ms: lat,
    unacked: latencies.filter((x) => x === Infinity).length,
    send_lag_ms: summarise(sendLag),
    client_cpu_pct: Math.round(((cpu.user + cpu.system) / 1000 / wall) * 1000) / 10,
    client_ramp_cpu_s: Math.round((cpuR.user + cpuR.system - cpu0.user - cpu0.system) / 1e4) / 100,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  await sleep(200);
  process.exit(0);
}

// A hard upper bound on the whole run, whatever the server does.
const budget = cfg.connectTimeout + cfg.warmup + cfg.duration + cfg.drain + 2 * cfg.hold + 30 + (cfg.control === "stdin" ? 120 : 0);
setTimeout(() => { console.error(`loadgen: time budget of ${budget}s exceeded`); process.exit(3); }, budget * 1000).unref();
main().catch((e) => { console.error(e); process.exit(1); });
