// Specification of the batcher: PROTOCOL §3 sequence numbers, §4 acks, the bounded persisted
// resend buffer, flush on size / time / urgency.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBatcher } from "../src/batcher.js";

function fakeTimers() {
  const t = { pending: [], setTimeout: (fn) => (t.pending.push(fn), t.pending.length), clearTimeout: () => {} };
  t.run = () => t.pending.splice(0).forEach((fn) => fn());
  return t;
}
const setup = (opts = {}) => {
  const frames = [];
  let stored = opts.stored || null;
  const timers = fakeTimers();
  // The end of the task comes when the test says (`end()`), or at once when it does not care.
  const tasks = [];
  const defer = opts.manualTasks ? (fn) => tasks.push(fn) : (fn) => fn();
  const b = createBatcher({ send: (text) => (opts.offline ? false : (frames.push(JSON.parse(text)), true)), load: () => stored, save: (q) => (stored = JSON.parse(JSON.stringify(q))), timers, defer, ...opts });
  return { b, frames, timers, stored: () => stored, end: () => tasks.splice(0).forEach((fn) => fn()) };
};
const ev = (k = "click") => ({ k, ts: 1 });

test("sequence numbers start at 1 and are consecutive within a batch", () => {
  const { b, frames } = setup();
  b.push(ev(), false);
  b.push(ev(), false);
  b.push(ev(), true);
  assert.deepEqual(frames.map((f) => [f.t, f.seq, f.events.length]), [["events", 1, 3]]);
});

test("non-urgent events wait for the flush timer, urgent ones go at once", () => {
  const { b, frames, timers } = setup();
  b.push(ev("scroll"), false);
  assert.equal(frames.length, 0);
  timers.run();
  assert.equal(frames.length, 1);
  b.push(ev("click"), true);
  assert.deepEqual(frames[1].seq, 2);
});

test("urgent events of one task go out together, at the end of the task", () => {
  const { b, frames, end } = setup({ manualTasks: true });
  b.push(ev("scroll"), false);
  for (let i = 0; i < 8; i++) b.push(ev("custom"), true); // e.g. a loop of track() calls
  assert.equal(frames.length, 0);
  end();
  assert.deepEqual(frames.map((f) => [f.seq, f.events.length]), [[1, 9]]);
  b.push(ev("click"), true);
  end();
  assert.deepEqual(frames.map((f) => f.seq), [1, 10]);
});

test("the end-of-task flush really is deferred by default (a microtask)", async () => {
  const frames = [];
  const b = createBatcher({ send: (t) => (frames.push(JSON.parse(t)), true), timers: fakeTimers() });
  for (let i = 0; i < 60; i++) b.push(ev("custom"), true);
  assert.equal(frames.length, 3); // flushed on size (20 unsent) only, so far
  await Promise.resolve();
  assert.equal(frames.length, 3); // nothing left for the end of the task: 60 events, 3 frames
  b.push(ev("click"), true);
  assert.equal(frames.length, 3);
  await Promise.resolve();
  assert.equal(frames.length, 4);
});

test("a full batch flushes on size without waiting for the timer", () => {
  const { b, frames } = setup({ maxPending: 3 });
  for (let i = 0; i < 3; i++) b.push(ev("scroll"), false);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].events.length, 3);
});

test("acked events leave the buffer, unacked ones stay for resend", () => {
  const { b } = setup();
  for (let i = 0; i < 5; i++) b.push(ev(), true);
  b.ack(3);
  assert.deepEqual(b.stats(), { seq: 5, pending: 2, acked: 3, dropped: 0 });
});

test("welcome resends everything above its ack, with the original sequence numbers", () => {
  const { b, frames } = setup();
  for (let i = 0; i < 4; i++) b.push(ev(), true);
  frames.length = 0;
  b.reset();
  b.welcome({ ack: 2, limits: { batch: 100, frame: 65536 } });
  assert.deepEqual(frames.map((f) => [f.seq, f.events.length]), [[3, 2]]);
});

test("the buffer persists, so the next page of the tab resends and continues the numbering", () => {
  const first = setup({ offline: true });
  first.b.push(ev(), true);
  first.b.push(ev(), true);
  const next = setup({ stored: first.stored() });
  next.b.welcome({ ack: 0 });
  next.b.push(ev(), true);
  assert.deepEqual(next.frames.map((f) => [f.seq, f.events.length]), [[1, 2], [3, 1]]);
});

test("the unacked buffer is bounded: the oldest events are dropped and counted", () => {
  const { b } = setup({ offline: true, maxBuffer: 10 });
  for (let i = 0; i < 15; i++) b.push(ev(), true);
  assert.deepEqual(b.stats(), { seq: 15, pending: 10, acked: 0, dropped: 5 });
  const bodies = b.beaconBodies({ site: "demo" }).map((t) => JSON.parse(t));
  assert.equal(bodies[0].seq, 6);
});

test("batches respect welcome's limits.batch and limits.frame", () => {
  const { b, frames } = setup({ offline: false });
  b.welcome({ ack: 0, limits: { batch: 4, frame: 2048 } });
  for (let i = 0; i < 10; i++) b.push({ k: "custom", ts: 1, name: "x".repeat(60) }, false);
  b.flush();
  assert.ok(frames.every((f) => f.events.length <= 4 && JSON.stringify(f).length <= 2048));
  assert.deepEqual(frames.flatMap((f) => f.events.map((_, i) => f.seq + i)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

test("a 1009 shrink halves the batch size", () => {
  const { b, frames } = setup();
  b.welcome({ ack: 0, limits: { batch: 8 } });
  b.shrink();
  for (let i = 0; i < 8; i++) b.push(ev(), false);
  b.flush();
  assert.ok(frames.every((f) => f.events.length <= 4));
});

test("an ack higher than anything assigned moves the numbering past it", () => {
  const { b } = setup();
  b.ack(40);
  assert.equal(b.push(ev(), false), 41);
});
