// Specification of the stream (PROTOCOL §2 handshake, §4 acks, §6 heartbeat, §7 close codes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createTransport, NO_RECONNECT, BACKOFF_CAP_MS } from "../src/transport.js";
import { createBatcher } from "../src/batcher.js";

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  open() {
    this.readyState = 1;
    this.onopen();
  }
  send(t) {
    this.sent.push(JSON.parse(t));
  }
  recv(msg) {
    this.onmessage({ data: JSON.stringify(msg) });
  }
  close() {
    this.readyState = 3;
  }
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

function setup({ random = () => 0.5, online = true } = {}) {
  FakeSocket.all = [];
  const timers = { delays: [], fns: [], setTimeout: (fn, d) => (timers.fns.push(fn), timers.delays.push(d), timers.fns.length), clearTimeout() {}, setInterval: (fn, d) => ((timers.tick = fn), (timers.hb = d), 1), clearInterval() {} };
  let clock = 1000;
  const net = { online };
  const states = [];
  const messages = [];
  let transport;
  const batcher = createBatcher({ send: (t) => transport.sendBatch(t), timers: { setTimeout: () => 0, clearTimeout() {} }, defer: (fn) => fn() });
  transport = createTransport({ url: "ws://x/v1/stream?site=demo&v=1", hello: () => ({ t: "hello", v: 1 }), batcher, onMessage: (m) => messages.push(m), onState: (s) => states.push(s), WebSocketImpl: FakeSocket, timers, random, clock: () => clock, isOnline: () => net.online });
  const sock = () => FakeSocket.all[FakeSocket.all.length - 1];
  return { transport, batcher, timers, states, messages, sock, net, advance: (ms) => (clock += ms) };
}

test("hello is the first message, and events wait for welcome", () => {
  const s = setup();
  s.transport.start();
  s.batcher.push({ k: "click", ts: 1 }, true);
  s.sock().open();
  assert.deepEqual(s.sock().sent, [{ t: "hello", v: 1 }]);
  s.sock().recv({ t: "welcome", v: 1, ack: 0, hb: 25000, limits: { frame: 65536, batch: 100 } });
  assert.deepEqual(s.sock().sent[1], { t: "events", seq: 1, events: [{ k: "click", ts: 1 }] });
  assert.deepEqual(s.states, ["connecting", "open"]);
});

test("a reconnect resends only what the server's welcome ack does not cover", () => {
  const s = setup();
  s.transport.start();
  s.sock().open();
  s.sock().recv({ t: "welcome", ack: 0, hb: 25000 });
  for (let i = 0; i < 3; i++) s.batcher.push({ k: "click", ts: i }, true);
  s.sock().serverClose(1006);
  s.timers.fns.pop()();
  s.sock().open();
  s.sock().recv({ t: "welcome", ack: 2, hb: 25000 });
  assert.deepEqual(s.sock().sent[1], { t: "events", seq: 3, events: [{ k: "click", ts: 2 }] });
});

test("acks are cumulative and empty the resend buffer", () => {
  const s = setup();
  s.transport.start();
  s.sock().open();
  s.sock().recv({ t: "welcome", ack: 0, hb: 25000 });
  for (let i = 0; i < 3; i++) s.batcher.push({ k: "click", ts: i }, true);
  s.sock().recv({ t: "ack", seq: 3 });
  assert.equal(s.batcher.stats().pending, 0);
});

for (const code of NO_RECONNECT) {
  test(`close ${code} stops for good: no reconnect (PROTOCOL §7)`, () => {
    const s = setup();
    s.transport.start();
    s.sock().open();
    s.sock().serverClose(code, "why");
    assert.equal(s.transport.state(), "stopped");
    assert.equal(s.timers.fns.length, 0);
  });
}

test("backoff is full jitter, exponential, capped", () => {
  const s = setup({ random: () => 1 });
  s.transport.start();
  for (let i = 0; i < 12; i++) {
    s.sock().serverClose(1011);
    s.timers.fns.pop()();
  }
  assert.deepEqual(s.timers.delays.slice(0, 4), [500, 1000, 2000, 4000]);
  assert.equal(Math.max(...s.timers.delays), BACKOFF_CAP_MS);
  const z = setup({ random: () => 0 });
  z.transport.start();
  z.sock().serverClose(1011);
  assert.equal(z.timers.delays[0], 0);
});

test("4010 draining reconnects at once, jittered within a second", () => {
  const s = setup({ random: () => 0.999 });
  s.transport.start();
  for (let i = 0; i < 5; i++) {
    s.sock().serverClose(4010, "draining");
    s.timers.fns.pop()();
  }
  assert.ok(s.timers.delays.every((d) => d < 1000));
});

const TRY_AGAIN_MS = 1000;

test("1013 (a batch was dropped) reconnects after at least a second, plus the backoff", () => {
  const s = setup({ random: () => 0 });
  s.transport.start();
  s.sock().serverClose(1013, "rate limited");
  assert.equal(s.timers.delays[0], TRY_AGAIN_MS);
  const t = setup({ random: () => 1 });
  t.transport.start();
  t.sock().serverClose(1013, "not stored");
  t.timers.fns.pop()();
  t.sock().serverClose(1013, "not stored");
  assert.deepEqual(t.timers.delays, [TRY_AGAIN_MS + 500, TRY_AGAIN_MS + 1000]);
});

test("offline: no connection attempt until the browser is online again", () => {
  const s = setup({ online: false });
  s.transport.start();
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(s.transport.state(), "closed");
  s.net.online = true;
  s.transport.online();
  assert.equal(FakeSocket.all.length, 1);
});

test("heartbeat pings after hb ms of silence, and a silent server is dropped", () => {
  const s = setup();
  s.transport.start();
  s.sock().open();
  s.sock().recv({ t: "welcome", ack: 0, hb: 1000 });
  s.advance(1000);
  s.timers.tick();
  assert.deepEqual(s.sock().sent.at(-1), { t: "ping" });
  const before = FakeSocket.all.length;
  s.advance(3001);
  s.timers.tick();
  assert.equal(s.transport.state(), "closed");
  s.timers.fns.pop()();
  assert.equal(FakeSocket.all.length, before + 1);
});

test("welcome (after the transport took its part), patches and errors reach the tracker; pongs and acks do not", () => {
  const s = setup();
  s.transport.start();
  s.sock().open();
  s.transport.send({ t: "applied", id: "a", pseq: 1, status: "applied", ms: 3 }); // waits for welcome
  s.sock().recv({ t: "welcome", ack: 0, hb: 25000, pseq: 4, resume: { from: 1, sent: 1, complete: false } });
  // The tracker sees the welcome once the stream is open and the outbox went out, so what it
  // sends in answer (reverts of stale patches) goes straight out, after the older reports.
  assert.deepEqual(s.states.at(-1), "open");
  assert.deepEqual(s.sock().sent.map((m) => m.t), ["hello", "applied"]);
  s.sock().recv({ t: "patch", pseq: 4, patch: { id: "b" } });
  s.sock().recv({ t: "ack", seq: 1 });
  s.sock().recv({ t: "pong" });
  s.sock().recv({ t: "error", code: "bad_message", detail: "x" });
  assert.deepEqual(s.messages.map((m) => m.t), ["welcome", "patch", "error"]);
  assert.deepEqual(s.messages[0].resume, { from: 1, sent: 1, complete: false });
});

test("applied reports made while the stream is down go out after the next welcome", () => {
  const s = setup();
  s.transport.start();
  s.transport.send({ t: "applied", id: "a", pseq: 1, status: "applied", ms: 3 });
  s.sock().open();
  s.sock().recv({ t: "welcome", ack: 0, hb: 25000 });
  assert.equal(s.sock().sent[1].t, "applied");
});
