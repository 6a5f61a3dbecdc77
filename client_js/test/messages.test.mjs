// Every message the tracker builds is valid under the shared JSON Schemas (protocol/schema/), and
// the schemas agree with the shared vectors (protocol/vectors/messages/) that the server's
// protocol tests also run. The tracker runs for real here (init() in jsdom, full feature set) over
// a fake WebSocket that plays the server's part of PROTOCOL §2-§6; the frames it sends and the
// beacon bodies it hands to navigator.sendBeacon are what is validated.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { JSDOM } from "jsdom";
import Ajv2020 from "ajv/dist/2020.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SCHEMA = join(ROOT, "protocol", "schema");
const VECTORS = join(ROOT, "protocol", "vectors", "messages");
const ajv = new Ajv2020({ strict: false, allErrors: true });
for (const f of readdirSync(SCHEMA)) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMA, f), "utf8")));
const schema = (name) => ajv.getSchema(`microadjust/${name}.schema.json`);
const valid = (name, msg) => {
  const v = schema(name);
  assert.ok(v(msg), `${name}: ${JSON.stringify(v.errors)}\n${JSON.stringify(msg).slice(0, 400)}`);
};

// ---------------------------------------------------------------- the tracker in jsdom

class FakeSocket {
  static all = [];
  /** The server's welcome for a hello (§2.3); by default the session is new or up to date. */
  static welcome = (m) => ({ t: "welcome", v: 1, sid: m.sid, ack: 0, hb: 25000, limits: { frame: 65536, batch: 100 }, pseq: m.pseq });
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    setTimeout(() => ((this.readyState = 1), this.onopen && this.onopen()));
  }
  send(text) {
    const m = JSON.parse(text);
    this.sent.push(m);
    if (m.t === "hello") this.recv(FakeSocket.welcome(m));
    if (m.t === "events") this.recv({ t: "ack", seq: m.seq + m.events.length - 1 });
  }
  recv(msg, unchecked) {
    if (!unchecked) valid("server-message", msg); // the fake server speaks the schema too
    setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify(msg) }));
  }
  close() {
    this.readyState = 3;
  }
}

const PAGE = `<section data-ma-slot="grid"><article data-ma-item="p1" data-ma-tags="sale shoes">P1</article>
<article data-ma-item="p2">P2 <button id="add">Add</button></article></section>
<p data-ma-read>${"word ".repeat(60)}</p>
<form name="signup"><input name="email" value="someone@example.org"><input type="password" name="pw"></form>`;

/** A fresh page with the tracker's globals pointing at it. */
function browser() {
  const dom = new JSDOM(`<!doctype html><title>Shop</title><body>${PAGE}</body>`, { url: "https://shop.example/shop?x=1", pretendToBeVisual: true });
  const w = dom.window;
  const beacons = [];
  w.navigator.sendBeacon = (url, body) => (beacons.push([url, body]), true);
  w.IntersectionObserver = class {
    observe() {}
    disconnect() {}
  };
  const globals = { window: w, WebSocket: FakeSocket, IntersectionObserver: w.IntersectionObserver, MA_COST: true, MA_ENGAGE: true, MA_HISTORY: true, MA_READ: true, MA_FORMS: true, MA_KEYS: true, MA_POINTER: true, MA_DEAD: true };
  for (const k of ["document", "location", "history", "navigator", "CustomEvent", "Event", "AbortController", "MutationObserver", "Node", "HTMLElement", "innerWidth", "innerHeight", "scrollX", "scrollY"]) globals[k] = w[k];
  for (const k of ["getSelection", "requestAnimationFrame", "cancelAnimationFrame"]) globals[k] = w[k].bind(w);
  for (const [k, v] of Object.entries(globals)) Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
  return { w, beacons, doc: w.document };
}
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(fn, ms = 3000) {
  for (const end = Date.now() + ms; Date.now() < end; await tick(5)) if (fn()) return;
  assert.fail("condition not met: " + fn);
}

test("every message the tracker sends (hello, events of every kind, applied, ping) and every beacon body is schema-valid", async () => {
  FakeSocket.all = [];
  const { w, doc, beacons } = browser();
  const { init } = await import("../src/tracker.js");
  const ma = init((n) => ({ site: "demo", "hover-intent": "100", "flush-ms": "0" })[n] ?? null, "https://cdn.example/microadjust.js");
  await until(() => ma.state().state === "open");
  const sock = FakeSocket.all[0];
  assert.equal(sock.url, "wss://cdn.example/v1/stream?site=demo&v=1");

  const fire = (el, type, init = {}, Ctor = w.MouseEvent) => el.dispatchEvent(Object.assign(new Ctor(type, { bubbles: true, cancelable: true, ...init }), init.extra || {}));
  const p1 = doc.querySelector("[data-ma-item=p1]");
  fire(p1, "pointerover", { extra: { pointerType: "mouse" } });
  await tick(150); // hover intent at 100 ms
  fire(doc.body, "pointerover", { extra: { pointerType: "mouse" } }); // leave: hover end
  fire(doc.getElementById("add"), "click", { clientX: 5, clientY: 5 });
  const email = doc.querySelector("[name=email]");
  email.focus();
  fire(email, "keydown", { key: "a" }, w.KeyboardEvent);
  fire(email, "keydown", { key: "b" }, w.KeyboardEvent);
  fire(email, "change", {}, w.Event);
  email.blur();
  fire(doc.forms[0], "submit", {}, w.Event);
  ma.track("add_to_cart", { item: "p1", qty: 1, gift: false, note: null });
  ma.track("purchase");
  w.history.pushState({}, "", "/cart");
  window.dispatchEvent(new w.Event("scroll"));
  await tick(200); // route settling (100 ms), scroll fallback gap (150 ms), the held click (reacted to by the scroll)
  Object.defineProperty(doc, "hidden", { value: true, configurable: true });
  Object.defineProperty(doc, "visibilityState", { value: "hidden", configurable: true });
  doc.dispatchEvent(new w.Event("visibilitychange")); // hide: engage, pointer, and the beacon
  await tick(20);

  // A patch from the server: the tracker answers with an `applied` report (§5.2), whatever the outcome.
  sock.recv({ t: "patch", pseq: 1, patch: { id: "r:p1", rule: "r", target: { item: "p1" }, ops: [{ op: "addClass", class: "ma-hi" }], ttl: 0, priority: 1, cause: 1 } });
  await until(() => sock.sent.some((m) => m.t === "applied"));
  const events = sock.sent.filter((m) => m.t === "events").flatMap((m) => m.events);

  for (const m of sock.sent) valid("client-message", m);
  const types = new Set(sock.sent.map((m) => m.t));
  for (const t of ["hello", "events", "applied"]) assert.ok(types.has(t), `no ${t} frame`);
  const kinds = new Set(events.map((e) => e.k));
  // (dwell, read, engage and pointer need layout, visibility or seconds of use: the e2e wire spec
  // validates those in Chromium.)
  for (const k of ["view", "hover", "click", "custom", "form", "keys", "scroll"]) assert.ok(kinds.has(k), `no ${k} event in ${[...kinds]}`);
  assert.deepEqual(events.filter((e) => e.k === "view").map((e) => [e.url, e.via]), [["/shop?x=1", undefined], ["/cart", "push"]]);
  assert.deepEqual(events.filter((e) => e.k === "hover").map((e) => e.phase), ["intent", "end"]);
  assert.ok(beacons.length > 0, "no beacon on hide");
  for (const [url, body] of beacons) {
    assert.equal(url, "https://cdn.example/v1/events");
    assert.equal(typeof body, "string"); // text/plain: no CORS preflight
    valid("beacon", JSON.parse(body));
  }
  // Sequence numbers 1..n, consecutive within and across batches.
  const seqs = sock.sent.filter((m) => m.t === "events").flatMap((m) => m.events.map((_, i) => m.seq + i));
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  assert.ok(!JSON.stringify(sock.sent).includes("someone@example.org"));
  ma.consent.revoke();
});

test("resume (§2.3): welcome.pseq is the baseline, so a refused patch is not replayed on every reconnect; an incomplete resume reverts the patches applied before", async () => {
  FakeSocket.all = [];
  const { doc } = browser();
  window.sessionStorage.clear();
  const { init } = await import("../src/tracker.js");
  const random = Math.random;
  Math.random = () => 0; // reconnect at once after 4010
  const ma = init((n) => ({ site: "demo", "flush-ms": "0" })[n] ?? null, "https://cdn.example/microadjust.js", () => import("../src/patcher/chunk.js"));
  const reports = [];
  doc.addEventListener("microadjust:patch", (e) => reports.push([e.detail.pseq, e.detail.status]));
  const sock = () => FakeSocket.all.at(-1);
  const hello = () => sock().sent.find((m) => m.t === "hello");
  const patch = (pseq, item, cls) => ({ t: "patch", pseq, patch: { id: "r:" + item, rule: "r", target: { item }, ops: [{ op: "addClass", class: cls }], ttl: 0, priority: 1, cause: 1 } });
  /** The server closes (draining), the tracker reconnects; `welcome(hello)` answers its hello, then `after` follow. */
  async function reconnect(welcome, ...after) {
    FakeSocket.welcome = (m) => ({ t: "welcome", v: 1, sid: m.sid, ack: 0, hb: 25000, limits: { frame: 65536, batch: 100 }, ...welcome(m) });
    const n = FakeSocket.all.length;
    sock().onclose({ code: 4010, reason: "draining" });
    await until(() => FakeSocket.all.length > n && ma.state().state === "open");
    after.forEach((m) => sock().recv(m, m === bad));
  }
  const p1 = doc.querySelector("[data-ma-item=p1]");
  let bad;
  try {
    await until(() => ma.state().state === "open");
    assert.equal(hello().pseq, 0);
    sock().recv(patch(1, "p1", "ma-a")); // applied
    bad = patch(2, "p2", "ma-b");
    bad.patch.ops[0].class = "not a class"; // refused by the client's vocabulary (say, from a newer server)
    sock().recv(bad, true);
    await until(() => reports.length === 2);
    assert.deepEqual(reports.slice().sort(), [ // (a refusal is reported at once, an application after its frame)
      [1, "applied"],
      [2, "refused"],
    ]);
    assert.ok(p1.classList.contains("ma-a"));

    // The server replays the refused patch once (the client said pseq 1) ...
    await reconnect((m) => ({ pseq: 2, resume: { from: m.pseq, sent: 1, complete: true } }), bad);
    assert.equal(hello().pseq, 1);
    await until(() => reports.length === 3);
    // ... and never again: the next hello starts from welcome.pseq (it said 1 again before).
    await reconnect((m) => ({ pseq: m.pseq }));
    assert.equal(hello().pseq, 2);
    assert.equal(window.sessionStorage.getItem("ma_pseq"), "2"); // the next page of the tab too
    assert.ok(p1.classList.contains("ma-a")); // a complete resume keeps what was applied

    // Some missed messages are gone (complete: false): patch 1 may be stale and is reverted; the
    // one that was sent is applied.
    await reconnect((m) => ({ pseq: 9, resume: { from: m.pseq, sent: 1, complete: false } }), patch(9, "p2", "ma-c"));
    await until(() => reports.length === 5);
    assert.deepEqual(reports.slice(3), [
      [1, "reverted"],
      [9, "applied"],
    ]);
    assert.ok(!p1.classList.contains("ma-a"));
    assert.ok(doc.querySelector("[data-ma-item=p2]").classList.contains("ma-c"));
    const applied = sock().sent.filter((m) => m.t === "applied").map((m) => [m.pseq, m.status]);
    assert.deepEqual(applied, [
      [1, "reverted"],
      [9, "applied"],
    ]);
    await reconnect((m) => ({ pseq: m.pseq }));
    assert.equal(hello().pseq, 9);
  } finally {
    Math.random = random;
    FakeSocket.welcome = (m) => ({ t: "welcome", v: 1, sid: m.sid, ack: 0, hb: 25000, limits: { frame: 65536, batch: 100 }, pseq: m.pseq });
    ma.consent.revoke();
  }
});

test("the tracker's ping is schema-valid", async () => {
  // The heartbeat frame is a literal in transport.js; build it through the transport itself.
  const { createTransport } = await import("../src/transport.js");
  const { createBatcher } = await import("../src/batcher.js");
  const sent = [];
  let tickHb;
  const timers = { setTimeout: () => 0, clearTimeout() {}, setInterval: (fn) => ((tickHb = fn), 1), clearInterval() {} };
  let sock;
  class S {
    constructor() {
      sock = this;
      this.readyState = 1;
    }
    send(t) {
      sent.push(JSON.parse(t));
    }
  }
  let clock = 0;
  const batcher = createBatcher({ send: () => false, timers });
  const tr = createTransport({ url: "ws://x", hello: () => ({ t: "hello" }), batcher, onMessage() {}, WebSocketImpl: S, timers, clock: () => clock, isOnline: () => true });
  tr.start();
  sock.onmessage({ data: JSON.stringify({ t: "welcome", v: 1, sid: "s_x", ack: 0, hb: 1000 }) });
  clock = 1000;
  tickHb();
  const ping = sent.find((m) => m.t === "ping");
  assert.ok(ping);
  valid("client-message", ping);
});

// ---------------------------------------------------------------- the shared vectors

const vectors = (f) => JSON.parse(readFileSync(join(VECTORS, f), "utf8")).messages;
/** ajv's `/events/0/via` (+ missingProperty) as the vectors' `events[0].via`. */
const pathOf = (e) =>
  (e.instancePath + (e.params && e.params.missingProperty ? "/" + e.params.missingProperty : ""))
    .split("/")
    .filter(Boolean)
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : (i ? "." : "") + p))
    .join("");

test("valid vectors pass their schema", () => {
  const all = vectors("valid.json");
  assert.ok(all.length >= 20);
  for (const v of all) valid(v.schema, v.message);
});

test("invalid vectors fail their schema, at the path the vector names", () => {
  const all = vectors("invalid.json");
  assert.ok(all.length >= 20);
  const wrongPath = [];
  for (const v of all) {
    if (v.frame !== undefined) {
      assert.throws(() => JSON.parse(v.frame), SyntaxError, v.name); // bad_json: not even JSON
      continue;
    }
    const check = schema(v.schema);
    assert.equal(check(v.message), false, `${v.name}: accepted by ${v.schema}`);
    const paths = check.errors.map(pathOf);
    // The schema may report more (oneOf branches); one of its errors is at, above or below the
    // vector's path. An empty vector path (the message as a whole) agrees with any error.
    if (v.path && !paths.some((p) => p === v.path || v.path.startsWith(p + ".") || v.path.startsWith(p + "[") || p.startsWith(v.path))) wrongPath.push(`${v.name}: ${v.path} vs ${paths.join(", ")}`);
  }
  assert.deepEqual(wrongPath, []);
});

const TOO_LONG = /value too long/;

test("the tracker's track() refuses what the vectors call an invalid custom event, and sends what they call valid", async () => {
  browser();
  const { init } = await import("../src/tracker.js");
  const ma = init((n) => ({ site: "demo", "flush-ms": "0" })[n] ?? null, "https://cdn.example/microadjust.js");
  const customs = (file) =>
    vectors(file)
      .filter((v) => v.message && v.message.t === "events" && Array.isArray(v.message.events) && v.message.events.length === 1 && v.message.events[0].k === "custom")
      .map((v) => [v.name, v.message.events[0], v.path]);
  const warn = console.warn;
  console.warn = () => {};
  try {
    for (const [name, ev] of customs("valid.json")) assert.equal(ma.track(ev.name, ev.props), true, name);
    // Only the vectors about the name or props (the others break fields track() never takes).
    const bad = customs("invalid.json").filter(([, , path]) => /\.(name|props)/.test(path));
    assert.ok(bad.length >= 1, "no invalid custom vectors");
    for (const [name, ev] of bad) assert.equal(ma.track(ev.name, ev.props), false, name);
  } finally {
    console.warn = warn;
    ma.consent.revoke();
  }
});

// PROTOCOL §3.1's string limits: an event over them would make the server refuse its whole batch
// (bad_message at events[i].props...), which stays unacked and is resent for ever (a poison batch):
// the goal and every event flushed with it would be lost. track() refuses it, sends nothing,
// warns on the console and returns false.
test("track() refuses prop values over 256 characters, prop names over 64 and non-scalar values (schema limits): warned, never sent", async () => {
  FakeSocket.all = [];
  browser();
  const { init } = await import("../src/tracker.js");
  const ma = init((n) => ({ site: "demo", "flush-ms": "0" })[n] ?? null, "https://cdn.example/microadjust.js");
  await until(() => ma.state().state === "open");
  const warn = console.warn;
  const warned = [];
  console.warn = (...a) => warned.push(a.join(" "));
  try {
    const vectorCases = vectors("invalid.json").filter((v) => TOO_LONG.test(v.name)).map((v) => v.message.events[0]);
    assert.ok(vectorCases.length >= 1);
    // Refused by the schema as they would go on the wire:
    const wireInvalid = [
      ...vectorCases,
      { name: "goal", props: { ["k".repeat(65)]: 1 } },
      { name: "goal", props: { note: "n".repeat(257) } },
      { name: "n".repeat(65) },
      { name: "goal", props: { list: [1] } },
    ];
    for (const ev of wireInvalid) assert.equal(schema("event")(JSON.parse(JSON.stringify({ k: "custom", ts: 1, ...ev }))), false, JSON.stringify(ev).slice(0, 80));
    // Not scalars either: JSON would drop these props silently, or throw (a BigInt).
    const bad = [...wireInvalid, { name: "goal", props: { fn() {} } }, { name: "goal", props: { u: undefined } }, { name: "goal", props: { big: 1n } }];
    for (const ev of bad) assert.equal(ma.track(ev.name, ev.props), false, String(ev.name).slice(0, 20) + " " + Object.keys(ev.props || {}));
    assert.equal(warned.length, bad.length);
    assert.ok(warned.every((w) => w.startsWith("microadjust: track() refused")));
    // At the limits it is sent, as one valid event.
    const max = { name: "g".repeat(64), props: Object.fromEntries(Array.from({ length: 32 }, (_, i) => ["k".repeat(62) + String(i).padStart(2, "0"), "v".repeat(256)])) };
    assert.equal(ma.track(max.name, max.props), true);
    max.props.late = { nested: 1 }; // a change after track() is not what was tracked
    await until(() => FakeSocket.all[0].sent.some((m) => m.t === "events" && m.events.some((e) => e.k === "custom")));
    const customs = FakeSocket.all[0].sent.filter((m) => m.t === "events").flatMap((m) => m.events.filter((e) => e.k === "custom"));
    assert.equal(customs.length, 1);
    valid("event", customs[0]);
    assert.equal(Object.keys(customs[0].props).length, 32);
  } finally {
    console.warn = warn;
    ma.consent.revoke();
  }
});
