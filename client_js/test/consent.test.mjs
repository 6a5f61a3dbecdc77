// Specification of consent (PROTOCOL §8, docs/TRACKER.md "Consent and privacy"): the state
// machine of consent.js (GPC, DNT, data-consent="required", grant, revoke, the persisted decision)
// and what the tracker does with it in jsdom: no socket and no stored id before `granted`;
// revoke() closes the socket and deletes the ids, the queue and the item history.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";

let win;
/** A fresh page (own localStorage/sessionStorage) with the tracker's globals pointing at it. */
function browser(nav = {}) {
  win = new JSDOM(`<!doctype html><title>T</title><body><article data-ma-item="p1">P1</article></body>`, { url: "https://shop.example/", pretendToBeVisual: true }).window;
  for (const [k, v] of Object.entries(nav)) Object.defineProperty(win.navigator, k, { value: v, configurable: true });
  win.IntersectionObserver = class {
    observe() {}
    disconnect() {}
  };
  const g = { window: win, WebSocket: FakeSocket, IntersectionObserver: win.IntersectionObserver, MA_COST: false, MA_ENGAGE: false, MA_HISTORY: true, MA_READ: false, MA_FORMS: false, MA_KEYS: false, MA_POINTER: false, MA_DEAD: false };
  for (const k of ["document", "location", "history", "navigator", "CustomEvent", "Event", "AbortController", "MutationObserver", "innerWidth", "innerHeight", "scrollY"]) g[k] = win[k];
  for (const k of ["getSelection", "requestAnimationFrame", "cancelAnimationFrame"]) g[k] = win[k].bind(win);
  for (const [k, v] of Object.entries(g)) Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
  FakeSocket.all = [];
  return win;
}
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.closed = false;
    this.sent = [];
    FakeSocket.all.push(this);
    queueMicrotask(() => this.onopen && this.onopen());
  }
  send(t) {
    const m = JSON.parse(t);
    this.sent.push(m);
    if (m.t === "hello") queueMicrotask(() => this.onmessage && this.onmessage({ data: JSON.stringify({ t: "welcome", v: 1, sid: m.sid, ack: 0, hb: 25000 }) }));
  }
  close() {
    this.closed = true;
    this.readyState = 3;
  }
}
const keys = (area) => Object.keys(win[area]).filter((k) => k.startsWith("ma_")).sort();
const attrs = (a) => (n) => ({ site: "demo", "flush-ms": "0", ...a })[n] ?? null;
const settle = () => new Promise((r) => setTimeout(r, 10));

const { createConsent, CONSENT_KEY } = await import("../src/consent.js");
const { readConfig } = await import("../src/config.js");
const { init, replay } = await import("../src/tracker.js");
const cfg = (a = {}) => readConfig(attrs(a), "https://cdn.example/microadjust.js", new URL("https://shop.example/"));

test("the script tag's consent attributes", () => {
  browser();
  assert.deepEqual([cfg().consentRequired, cfg().respectGpc], [false, true]); // defaults
  assert.equal(cfg({ consent: "required" }).consentRequired, true);
  assert.equal(cfg({ consent: "yes" }).consentRequired, false);
  assert.equal(cfg({ "respect-gpc": "false" }).respectGpc, false);
  assert.equal(cfg({ "respect-gpc": "no" }).respectGpc, true); // only "false" opts out
});

test("consent.js: granted by default, pending when required, denied by GPC or DNT", () => {
  const cases = [
    [{}, {}, "granted"],
    [{ consent: "required" }, {}, "pending"],
    [{}, { globalPrivacyControl: true }, "denied"],
    [{}, { doNotTrack: "1" }, "denied"],
    [{}, { doNotTrack: "0" }, "granted"],
    [{}, { globalPrivacyControl: false }, "granted"],
    [{ consent: "required" }, { globalPrivacyControl: true }, "denied"],
    [{ "respect-gpc": "false" }, { globalPrivacyControl: true, doNotTrack: "1" }, "granted"],
    [{ "respect-gpc": "false", consent: "required" }, { globalPrivacyControl: true }, "pending"],
  ];
  for (const [a, nav, want] of cases) {
    browser();
    assert.equal(createConsent(cfg(a), nav).status(), want, JSON.stringify([a, nav]));
  }
});

test("consent.js: grant() and revoke() persist; a signal refuses grant() with a warning", () => {
  browser();
  const c = createConsent(cfg({ consent: "required" }), {});
  assert.equal(c.grant(), true);
  assert.equal(c.status(), "granted");
  assert.equal(win.localStorage.getItem(CONSENT_KEY), '"granted"');
  assert.equal(createConsent(cfg({ consent: "required" }), {}).status(), "granted"); // next page
  c.revoke();
  assert.equal(c.status(), "denied");
  assert.equal(createConsent(cfg(), {}).status(), "denied"); // the opt-out outlives data-consent
  assert.equal(createConsent(cfg({ "respect-gpc": "false" }), {}).status(), "denied");

  browser();
  const warned = [];
  const warn = console.warn;
  console.warn = (...a) => warned.push(a.join(" "));
  try {
    const g = createConsent(cfg({ consent: "required" }), { globalPrivacyControl: true });
    assert.equal(g.grant(), false);
    assert.equal(g.status(), "denied");
    assert.equal(win.localStorage.getItem(CONSENT_KEY), null); // nothing stored for a refused grant
    assert.match(warned.join("\n"), /grant\(\) ignored/);
  } finally {
    console.warn = warn;
  }
});

test("tracker: pending opens no socket and writes nothing until grant()", async () => {
  browser();
  const ma = init(attrs({ consent: "required" }), "https://cdn.example/microadjust.js");
  assert.equal(ma.track("early"), false);
  win.document.querySelector("[data-ma-item]").click();
  await settle();
  assert.equal(FakeSocket.all.length, 0);
  assert.deepEqual([keys("localStorage"), keys("sessionStorage")], [[], []]);
  assert.deepEqual(ma.state(), { state: "closed", consent: "pending", seq: 0, pending: 0, acked: 0, dropped: 0, vid: null, sid: null, items: [] });

  ma.consent.grant();
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(ma.state().state, "open");
  assert.equal(ma.track("late"), true);
  await settle(); // an urgent event goes out at the end of the task
  const hello = FakeSocket.all[0].sent[0];
  assert.equal(hello.consent, "granted");
  const evs = FakeSocket.all[0].sent.filter((m) => m.t === "events").flatMap((m) => m.events);
  assert.deepEqual(evs.filter((e) => e.k === "custom").map((e) => e.name), ["late"]);
  assert.deepEqual(keys("localStorage"), ["ma_consent", "ma_vid"]);
  assert.ok(keys("sessionStorage").includes("ma_sid"));
  ma.consent.revoke();
});

test("tracker: a revoke() the stub queued before the script loaded opens no socket at all (§8)", async () => {
  browser();
  const stub = { q: [["track", ["early"]], ["consent.revoke", []]] };
  const ma = init(attrs({}), "https://cdn.example/microadjust.js");
  replay(stub, ma); // as index.js does, in the same task as init()
  await settle();
  assert.equal(FakeSocket.all.length, 0);
  assert.deepEqual([keys("localStorage"), keys("sessionStorage")], [["ma_consent"], []]);
  assert.equal(ma.consent.status(), "denied");
});

test("tracker: revoke() closes the socket, clears ids, queue and history, and stays off", async () => {
  browser();
  const ma = init(attrs({ "flush-ms": "60000" }), "https://cdn.example/microadjust.js");
  await settle();
  const sock = FakeSocket.all[0];
  ma.track("goal");
  win.dispatchEvent(new win.Event("scroll")); // not urgent: stays queued
  await settle();
  assert.ok(ma.state().seq >= 2);
  ma.consent.revoke();
  assert.equal(sock.closed, true);
  assert.deepEqual(ma.state(), { state: "closed", consent: "denied", seq: 0, pending: 0, acked: 0, dropped: 0, vid: null, sid: null, items: [] });
  assert.deepEqual(keys("localStorage"), ["ma_consent"]);
  assert.deepEqual(keys("sessionStorage"), []);
  assert.equal(ma.track("after"), false);
  win.history.pushState({}, "", "/elsewhere"); // signals are stopped: no view, no socket
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(sock.sent.filter((m) => m.t === "events").flatMap((m) => m.events).some((e) => e.name === "after" || e.url === "/elsewhere"), false);

  // A later page of the same visitor: still denied, even without data-consent.
  const next = init(attrs(), "https://cdn.example/microadjust.js");
  await settle();
  assert.equal(next.consent.status(), "denied");
  assert.equal(FakeSocket.all.length, 1);
  // And a new grant() starts over with fresh ids.
  next.consent.grant();
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(next.state().consent, "granted");
  next.consent.revoke();
});

test("tracker: GPC and DNT keep it off, data-respect-gpc=false turns it on", async () => {
  for (const nav of [{ globalPrivacyControl: true }, { doNotTrack: "1" }]) {
    browser(nav);
    const warn = console.warn;
    console.warn = () => {};
    const ma = init(attrs(), "https://cdn.example/microadjust.js");
    ma.consent.grant();
    console.warn = warn;
    await settle();
    assert.equal(ma.consent.status(), "denied");
    assert.equal(FakeSocket.all.length, 0);
    assert.deepEqual([keys("localStorage"), keys("sessionStorage")], [[], []]);
  }
  browser({ globalPrivacyControl: true });
  const ma = init(attrs({ "respect-gpc": "false" }), "https://cdn.example/microadjust.js");
  await settle();
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(ma.state().state, "open");
  ma.consent.revoke();
});
