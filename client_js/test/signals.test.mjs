// Specification of the signals' rules (client_js/src/signals/, docs/TRACKER.md "Events on the
// wire") in jsdom with a fake clock: hover intent vs pass-through, rage and dead clicks, and form /
// key signals that never carry a value or a key.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";

const PAGE = `<section data-ma-slot="grid"><article data-ma-item="p1" data-ma-tags="sale shoes"><b>P1</b></article>
<article data-ma-item="p2">P2</article><div id="inert">inert</div></section>
<form name="signup" id="f"><input name="email" value="me@example.org"><input type="password" name="pw" value="hunter2">
<input type="hidden" name="token" value="t0k3n"><input name="cc" autocomplete="cc-number" value="4111111111111111">
<input name="cc2" autocomplete="billing cc-number" value="4111111111111112"><input name="cc3" autocomplete="section-pay cc-csc" value="123">
<textarea id="bio">my life story</textarea><div data-ma-ignore><input name="secret" value="s3cret"></div></form>`;

/** A page, a fake clock (at `t0` ms since page start) driving setTimeout and performance.now, and a ctx recording emits. */
function setup(t0 = 1000) {
  const w = new JSDOM(`<!doctype html><body>${PAGE}</body>`, { url: "https://shop.example/" }).window;
  const clock = { t: t0, id: 0, q: [] };
  const g = {
    window: w,
    document: w.document,
    MutationObserver: w.MutationObserver,
    getSelection: w.getSelection.bind(w),
    performance: { now: () => clock.t },
    scrollY: 0,
    innerHeight: 800,
    MA_DEAD: true, // the full build's dead-click detection (a compile-time flag, client_js/build.mjs)
    setTimeout: (fn, d = 0) => (clock.q.push({ id: ++clock.id, at: clock.t + d, fn }), clock.id),
    clearTimeout: (id) => (clock.q = clock.q.filter((x) => x.id !== id)),
  };
  const saved = Object.fromEntries(Object.keys(g).map((k) => [k, Object.getOwnPropertyDescriptor(globalThis, k)]));
  for (const [k, v] of Object.entries(g)) Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
  const restore = () => {
    for (const [k, d] of Object.entries(saved)) d ? Object.defineProperty(globalThis, k, d) : delete globalThis[k];
  };
  /** Advances the fake clock, running due timers in order. */
  const tick = (ms) => {
    const end = clock.t + ms;
    for (;;) {
      const due = clock.q.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      clock.q = clock.q.filter((x) => x !== due);
      clock.t = due.at;
      due.fn();
    }
    clock.t = end;
  };
  const out = [];
  const hides = [];
  const ctx = {
    cfg: { hoverIntent: 2000 },
    rate: () => 1,
    emit: (ev, urgent) => out.push(urgent ? { ...ev, urgent } : ev),
    on: (t, type, fn, capture) => t.addEventListener(type, fn, { capture }),
    onHide: (fn) => hides.push(fn),
    onStop() {},
    onScan() {},
    scan() {},
  };
  const $ = (s) => w.document.querySelector(s);
  const fire = (el, type, props = {}, Ctor = w.MouseEvent) => el.dispatchEvent(Object.assign(new Ctor(type, { bubbles: true, ...props }), props.extra || {}));
  const over = (el, pointerType = "mouse") => fire(el, "pointerover", { extra: { pointerType } });
  return { w, $, fire, over, tick, out, ctx, hide: () => hides.forEach((f) => f()), restore, flush: () => new Promise((r) => queueMicrotask(r)) };
}

const { hover, MIN_END_MS } = await import("../src/signals/hover.js");
const { clicks, RAGE_MS, RAGE_PX, DEAD_MS } = await import("../src/signals/clicks.js");
const { forms } = await import("../src/signals/forms.js");
const { scroll, SAMPLE_MS } = await import("../src/signals/scroll.js");
const { keys } = await import("../src/signals/keys.js");

test("hover: passing through sends nothing; resting sends one urgent intent, then the end with the total", () => {
  const s = setup();
  try {
    hover(s.ctx);
    s.over(s.$("[data-ma-item=p2]"));
    s.tick(MIN_END_MS - 1);
    s.over(s.$("#inert")); // leaves p2 after 499 ms; #inert is in the grid slot
    s.tick(100);
    s.over(s.$("[data-ma-item=p1]"));
    assert.deepEqual(s.out, []); // pass-through
    s.tick(1999);
    assert.deepEqual(s.out, []);
    s.over(s.$("[data-ma-item=p1] b")); // moving inside the element is still resting on it
    s.tick(1);
    assert.deepEqual(s.out, [{ k: "hover", item: "p1", tags: ["sale", "shoes"], dur: 2000, phase: "intent", urgent: true }]);
    s.tick(3000);
    assert.equal(s.out.length, 1); // once per rest
    s.fire(s.w.document.body, "pointerout", { relatedTarget: null }); // leaves the window
    assert.deepEqual(s.out[1], { k: "hover", item: "p1", tags: ["sale", "shoes"], dur: 5000, phase: "end" });
  } finally {
    s.restore();
  }
});

test("hover: a pass of >= 500 ms without intent sends only its end; touch is ignored", () => {
  const s = setup();
  try {
    hover(s.ctx);
    s.over(s.$("[data-ma-item=p2]"));
    s.tick(800);
    s.over(s.$("[data-ma-item=p1]"), "touch"); // a tap is not a hover: p2 is still the current one
    s.tick(100);
    s.over(s.$("#inert"));
    assert.deepEqual(JSON.parse(JSON.stringify(s.out)), [{ k: "hover", item: "p2", dur: 900, phase: "end" }]); // as on the wire
    s.hide(); // the page hides while resting on the grid slot for 0 ms: too short
    assert.equal(s.out.length, 1);
  } finally {
    s.restore();
  }
});

test("scroll: a gesture's speed comes from its own samples, never from page start or the previous gesture", () => {
  const s = setup(300); // the page is 300 ms old: a flick right after load
  try {
    scroll(s.ctx);
    /** Scroll events every SAMPLE_MS, 100 px each (2000 px/s), then scrollend after 150 ms. */
    const gesture = (...ys) => {
      for (const [i, y] of ys.entries()) {
        if (i) s.tick(SAMPLE_MS);
        globalThis.scrollY = y;
        s.w.dispatchEvent(new s.w.Event("scroll"));
      }
      s.tick(150);
      s.w.dispatchEvent(new s.w.Event("scrollend"));
    };
    gesture(100, 200, 300);
    s.tick(300);
    gesture(400, 500, 600);
    // Samples at 2000 px/s, then the end sample 150 ms later with no movement (EWMA 0.3): 1400 px/s.
    // Timing a gesture's first sample against page start (300 ms: 333 px/s) or against the previous
    // gesture's end (300 ms before) made both 828: a fast flick read as slow reading.
    assert.deepEqual(
      s.out.map((e) => [e.speed, e.dir]),
      [
        [1400, "down"],
        [1400, "down"],
      ],
    );
  } finally {
    s.restore();
  }
});

test("clicks: the 3rd within 800 ms and 30 px is rage; spread out, far apart or slower it is not", async () => {
  const s = setup();
  try {
    clicks(s.ctx);
    const el = s.$("#inert");
    const click = (x, y) => s.fire(el, "click", { clientX: x, clientY: y });
    const verdicts = () => s.out.map((e) => !!e.rage);
    click(10, 10);
    s.tick(300);
    click(20, 15);
    s.tick(300);
    click(12, 12); // 3rd within 800 ms and 30 px
    s.tick(DEAD_MS);
    assert.deepEqual(verdicts(), [false, false, true]);
    s.out.length = 0;
    for (let i = 0; i < 3; i++) click(10, 10), s.tick(RAGE_MS / 2); // slower: the 1st expired by the 3rd
    s.tick(DEAD_MS);
    assert.deepEqual(verdicts(), [false, false, false]);
    s.out.length = 0;
    for (const x of [10, 10 + RAGE_PX, 10]) click(x, 10), s.tick(50); // each one 30 px from the last
    click(10, 10); // 2 near ones (the 3rd and this) so far
    s.tick(50);
    click(12, 10); // the 3rd near one within 800 ms
    s.tick(DEAD_MS);
    assert.deepEqual(verdicts(), [false, false, false, false, true]);
    assert.ok(s.out.every((e) => e.k === "click" && e.slot === "grid" && e.urgent));
  } finally {
    s.restore();
  }
});

test("scroll: wheel notches without smooth scrolling (one step per gesture) are timed against each other", () => {
  const s = setup(300);
  try {
    scroll(s.ctx);
    // Each notch is its own gesture: one scroll event and its scrollend in the same instant.
    const notch = (y) => {
      globalThis.scrollY = y;
      s.w.dispatchEvent(new s.w.Event("scroll"));
      s.w.dispatchEvent(new s.w.Event("scrollend"));
    };
    notch(300); // the page's first step: nothing to time it against (not page start)
    s.tick(40);
    notch(600); // 300 px 40 ms after the previous notch: 7500 px/s, a skimmer's spin
    s.tick(2000);
    notch(900); // after a pause longer than a gesture gap: untimed again
    assert.deepEqual(
      s.out.map((e) => e.speed),
      [0, 7500, 0],
    );
  } finally {
    s.restore();
  }
});

test("clicks: dead when nothing happens within 1 s; held until the page reacts (DOM change, scroll)", async () => {
  const s = setup();
  try {
    clicks(s.ctx);
    s.fire(s.$("[data-ma-item=p2]"), "click", { clientX: 1, clientY: 1 });
    s.tick(DEAD_MS - 1);
    assert.deepEqual(s.out, []); // held
    s.tick(1);
    assert.deepEqual(s.out, [{ k: "click", item: "p2", tags: undefined, dead: true, urgent: true }]);

    s.fire(s.$("[data-ma-item=p1]"), "click", { clientX: 100, clientY: 1 });
    s.$("#inert").textContent = "opened"; // the page reacts
    await s.flush(); // MutationObserver callbacks are microtasks
    assert.equal(s.out.length, 2);
    assert.equal(s.out[1].dead, undefined);
    assert.equal(s.out[1].item, "p1");

    s.fire(s.$("#inert"), "click", { clientX: 300, clientY: 1 });
    s.w.dispatchEvent(new s.w.Event("scroll"));
    assert.equal(s.out.length, 3);
    assert.equal(s.out[2].dead, undefined);

    s.fire(s.$("#inert"), "click", { clientX: 500, clientY: 1 });
    s.hide(); // navigation is a reaction too, and the click must leave before the page
    assert.equal(s.out.length, 4);
    assert.equal(s.out[3].dead, undefined);
    s.tick(DEAD_MS * 2);
    assert.equal(s.out.length, 4); // never twice
  } finally {
    s.restore();
  }
});

test("forms and keys: names only, never a value or a key; password, hidden, card and ignored fields unseen", () => {
  const s = setup();
  try {
    forms(s.ctx);
    keys(s.ctx);
    const all = ["[name=email]", "[name=pw]", "[name=token]", "[name=cc]", "[name=cc2]", "[name=cc3]", "#bio", "[name=secret]"];
    for (const sel of all) {
      const el = s.$(sel);
      s.fire(el, "focusin", {}, s.w.FocusEvent);
      for (const key of ["x", "y", "z"]) {
        s.fire(el, "keydown", { key, code: "Key" + key.toUpperCase() }, s.w.KeyboardEvent);
        s.tick(120);
      }
      s.fire(el, "change", {}, s.w.Event);
      s.fire(el, "focusout", {}, s.w.FocusEvent);
    }
    s.fire(s.$("#f"), "submit", {}, s.w.Event);
    const seen = s.out.map((e) => e.field || "form:" + e.form);
    assert.deepEqual([...new Set(seen)], ["email", "bio", "form:signup"]);
    assert.deepEqual(s.out.filter((e) => e.k === "keys"), [
      { k: "keys", field: "email", form: "signup", n: 3, mean: 120 },
      { k: "keys", field: "bio", form: "signup", n: 3, mean: 120 },
    ]);
    assert.deepEqual(s.out.filter((e) => e.k === "form" && e.field === "email").map((e) => e.ev), ["focus", "change", "blur"]);
    assert.deepEqual(s.out.at(-1), { k: "form", ev: "submit", form: "signup", urgent: true });
    const text = JSON.stringify(s.out);
    for (const secret of ["me@example.org", "hunter2", "t0k3n", "4111", "life story", "s3cret", '"x"', "KeyX"]) assert.ok(!text.includes(secret), secret);
    const fields = new Set(s.out.flatMap((e) => Object.keys(e)));
    assert.deepEqual([...fields].filter((f) => !["k", "ev", "field", "form", "n", "mean", "urgent"].includes(f)), []);
  } finally {
    s.restore();
  }
});

test("keys the schema would refuse are not sent as they are: over 128 characters cut, empty left out", async () => {
  const s = setup();
  const { ref } = await import("../src/dom.js");
  const { pageItems } = await import("../src/signals/page.js");
  const grid = s.$("section");
  grid.insertAdjacentHTML("beforeend", `<article data-ma-item="${"k".repeat(200)}">long</article><article data-ma-item="">empty</article>`);
  try {
    assert.equal(ref(grid.lastElementChild.previousElementSibling).item, "k".repeat(128));
    assert.equal(ref(grid.lastElementChild).item, undefined); // an empty key is no key: the slot names it
    assert.deepEqual(pageItems().map((i) => i.key.length), [2, 2, 128]);
  } finally {
    s.restore();
  }
});
