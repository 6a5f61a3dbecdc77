// Specification of the patcher (client_js/src/patcher/): every op of PROTOCOL §5.1 applies in
// one animation frame and reverts to the exact previous DOM; patch ids are idempotent; ttl
// reverts; subscribe() takes patches instead of the DOM; reports follow §5.2.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { createPatcher } from "../src/patcher/index.js";
import * as extra from "../src/patcher/extra.js";

// The lazily loaded chunk (template, notify), already at hand: loading it takes no frame here.
const loadExtra = async () => extra;

const PAGE = `
<section data-ma-slot="grid">
  <article class="product" data-ma-item="p1" data-ma-tags="sneakers running">P1</article>
  <article class="product" data-ma-item="p4" data-ma-tags="watches luxury">P4</article>
</section>
<ul data-ma-slot="recs">
  <li data-ma-item="r1">R1</li>
  <li data-ma-item="r2">R2</li>
  <li class="sep">more</li>
  <li data-ma-item="r3">R3</li>
  <li data-ma-item="r4">R4</li>
</ul>
<a data-ma-slot="cta" class="btn  is-muted" style="color: red;" href="/cart">Buy <b>now</b></a>
<div data-ma-slot="discount" hidden="until-found"><span data-ma-text="msg"></span></div>
<div data-ma-slot="explore">Explore more</div>
<template id="ma-offer"><aside class="offer"><h3 data-ma-text="title">Offer</h3><p data-ma-text="body"></p></aside></template>`;

/** A page in jsdom with a patcher on it; `frames()` waits until reports of the last tick arrived. */
function setup(html = PAGE, options = {}) {
  const { window: win } = new JSDOM(`<!doctype html><html><head></head><body>${html}</body></html>`, { pretendToBeVisual: true });
  const reports = [];
  const patcher = createPatcher({ report: (r) => reports.push(r), root: win.document, win, now: () => win.performance.now(), loadExtra, ...options });
  // Reports are sent from a task queued by the frame that wrote (after its paint): wait n frames,
  // then one more and a task, so a write in frame n has been reported too.
  const frames = (n = 2) =>
    new Promise((resolve) => {
      const step = () => (n-- ? win.requestAnimationFrame(step) : win.setTimeout(resolve));
      win.requestAnimationFrame(step);
    });
  // For patches whose ops live in the extra chunk: its first import may take several frames.
  const until = async (cond, ms = 2000) => {
    for (const end = Date.now() + ms; !cond() && Date.now() < end; ) await frames(1);
    assert.ok(cond(), "condition not reached");
  };
  return { win, doc: win.document, patcher, reports, frames, until, $: (s) => win.document.querySelector(s), body: () => win.document.body.innerHTML };
}

let seq = 0;
function patch(target, ops, extra = {}) {
  return { id: `t${++seq}`, rule: "r1", target, ops, ttl: 0, priority: 0, cause: 0, ...extra };
}

// [name, target, ops, what the page shows while the patch is applied]
const OPS = [
  ["addClass", { item: "p1" }, [{ op: "addClass", class: "ma-emphasis" }], ({ $ }) => assert.ok($("[data-ma-item=p1]").classList.contains("ma-emphasis"))],
  ["addClass of a class already there changes nothing", { slot: "cta" }, [{ op: "addClass", class: "btn" }], ({ $ }) => assert.equal($("a").getAttribute("class"), "btn  is-muted")],
  ["removeClass", { slot: "cta" }, [{ op: "removeClass", class: "is-muted" }], ({ $ }) => assert.equal($("a").className, "btn")],
  ["setText replaces child elements with text", { slot: "cta" }, [{ op: "setText", text: "Take 10% off (2 < 3)" }], ({ $ }) => {
    assert.equal($("a").textContent, "Take 10% off (2 < 3)");
    assert.equal($("a").children.length, 0);
  }],
  ["setStyle on an element with a style attribute", { slot: "cta" }, [{ op: "setStyle", prop: "box-shadow", value: "0 0 0 3px rgba(255, 180, 0, 0.6)" }], ({ $ }) => assert.match($("a").style.boxShadow, /3px/)],
  ["setStyle overriding a declaration", { slot: "cta" }, [{ op: "setStyle", prop: "color", value: "blue" }], ({ $ }) => assert.equal($("a").style.color, "blue")],
  ["setStyle on an element without style", { item: "r1" }, [{ op: "setStyle", prop: "font-weight", value: "700" }], ({ $ }) => assert.equal($("[data-ma-item=r1]").style.fontWeight, "700")],
  ["setAttr aria", { slot: "cta" }, [{ op: "setAttr", name: "aria-label", value: "Recommended" }], ({ $ }) => assert.equal($("a").getAttribute("aria-label"), "Recommended")],
  ["setAttr title and data", { item: "p4" }, [{ op: "setAttr", name: "title", value: "Popular" }, { op: "setAttr", name: "data-badge", value: "new" }], ({ $ }) => {
    assert.equal($("[data-ma-item=p4]").title, "Popular");
    assert.equal($("[data-ma-item=p4]").dataset.badge, "new");
  }],
  ["setAttr hidden true", { slot: "explore" }, [{ op: "setAttr", name: "hidden", value: true }], ({ $ }) => assert.ok($("[data-ma-slot=explore]").hidden)],
  ["setAttr hidden false removes it", { slot: "discount" }, [{ op: "setAttr", name: "hidden", value: false }], ({ $ }) => assert.ok(!$("[data-ma-slot=discount]").hasAttribute("hidden"))],
  ["show", { slot: "discount" }, [{ op: "show" }], ({ $ }) => assert.equal($("[data-ma-slot=discount]").hidden, false)],
  ["hide", { slot: "explore" }, [{ op: "hide" }], ({ $ }) => assert.equal($("[data-ma-slot=explore]").hidden, true)],
  ["reorder keeps non-item children in place and unlisted items after listed ones", { slot: "recs" }, [{ op: "reorder", keys: ["r3", "r1"] }], ({ doc }) =>
    assert.deepEqual([...doc.querySelectorAll("ul > li")].map((li) => li.textContent), ["R3", "R1", "more", "R2", "R4"])],
  ["template append fills text slots", { slot: "discount" }, [{ op: "template", id: "ma-offer", slots: { title: "Free shipping", body: "Today only & then 2<3" } }], ({ $ }) => {
    assert.equal($("[data-ma-slot=discount] .offer h3").textContent, "Free shipping");
    assert.equal($("[data-ma-slot=discount] .offer p").textContent, "Today only & then 2<3");
    assert.equal($("[data-ma-slot=discount]").lastElementChild.className, "offer");
  }],
  ["template prepend keeps unfilled slots as the page wrote them", { slot: "explore" }, [{ op: "template", id: "ma-offer", where: "prepend" }], ({ $ }) => {
    assert.equal($("[data-ma-slot=explore]").firstElementChild.className, "offer");
    assert.equal($("[data-ma-slot=explore] h3").textContent, "Offer");
  }],
  ["template replace", { slot: "cta" }, [{ op: "template", id: "ma-offer", where: "replace", slots: { title: "Hi" } }], ({ $ }) =>
    assert.equal($("a").innerHTML, '<aside class="offer"><h3 data-ma-text="title">Hi</h3><p data-ma-text="body"></p></aside>')],
  ["notify badge sits in its target", { item: "p4" }, [{ op: "notify", kind: "badge", text: "Hot" }], ({ $ }) => assert.equal($("[data-ma-item=p4] > .ma-badge").textContent, "Hot")],
];

for (const [name, target, ops, check] of OPS) {
  test(`${name}: applies in one frame, reverts to the exact previous DOM`, async () => {
    const page = setup();
    const before = page.body();
    const p = patch(target, ops);
    page.patcher.apply({ pseq: 1, patch: p });
    assert.equal(page.body(), before, "nothing is written before the frame");
    await page.frames();
    check(page);
    assert.deepEqual(page.reports.map((r) => [r.id, r.pseq, r.status]), [[p.id, 1, "applied"]]);
    page.patcher.revert(p.id);
    await page.frames();
    assert.equal(page.body(), before);
    assert.equal(page.reports[1].status, "reverted");
  });
}

test("toast and slide-in are polite live regions with a dismiss button; revert leaves only the empty region", async () => {
  const page = setup();
  const before = page.body();
  const toast = patch({ slot: "cta" }, [{ op: "notify", kind: "toast", text: "Added to cart <3" }]);
  const slide = patch({ slot: "nowhere" }, [{ op: "notify", kind: "slidein", title: "Still thinking?", text: "Your cart is saved." }]);
  page.patcher.apply({ pseq: 1, patch: toast });
  page.patcher.apply({ pseq: 2, patch: slide });
  await page.until(() => page.reports.length >= 2);
  const region = page.$("body > .ma-r");
  assert.equal(region.getAttribute("role"), "status");
  assert.equal(region.getAttribute("aria-live"), "polite");
  assert.equal(page.$(".ma-toast").firstChild.textContent, "Added to cart <3");
  assert.equal(page.$(".ma-slidein strong").textContent, "Still thinking?");
  assert.equal(page.$(".ma-slidein .ma-x").getAttribute("aria-label"), "Dismiss");
  // a page-level notify needs no element: the slide-in applied although its slot is absent
  assert.deepEqual(page.reports.map((r) => r.status), ["applied", "applied"]);

  page.$(".ma-slidein .ma-x").click();
  await page.frames();
  assert.equal(page.$(".ma-slidein"), null);
  assert.deepEqual(page.reports[2], { id: slide.id, pseq: 2, status: "reverted", reason: "dismissed", ms: page.reports[2].ms });

  page.patcher.revertAll();
  await page.frames();
  region.remove(); // kept on purpose so later notifications are announced
  assert.equal(page.body(), before);
});

test("the notify stylesheet is installed once", async () => {
  const page = setup();
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "notify", kind: "toast", text: "a" }]) });
  page.patcher.apply({ pseq: 2, patch: patch({ slot: "cta" }, [{ op: "notify", kind: "toast", text: "b" }]) });
  await page.frames();
  const sheets = [...page.doc.styleSheets].filter((s) => [...s.cssRules].some((r) => r.cssText.includes(".ma-toast")));
  assert.equal(sheets.length + (page.doc.adoptedStyleSheets?.length || 0), 1);
});

test("all patches of one tick are written in the same frame", async () => {
  const page = setup();
  page.patcher.apply({ pseq: 1, patch: patch({ item: "p1" }, [{ op: "addClass", class: "a" }]) });
  page.patcher.apply({ pseq: 2, patch: patch({ slot: "cta" }, [{ op: "setText", text: "Go" }]) });
  page.patcher.apply({ pseq: 3, patch: patch({ slot: "explore" }, [{ op: "hide" }]) });
  const seen = [];
  page.win.requestAnimationFrame(() => seen.push([page.$("[data-ma-item=p1]").className, page.$("a").textContent, page.$("[data-ma-slot=explore]").hidden]));
  await page.frames();
  assert.deepEqual(seen, [["product a", "Go", true]]);
  assert.deepEqual(page.reports.map((r) => r.pseq), [1, 2, 3]);
});

test("ms runs from the causing event to after the frame that wrote it", async () => {
  const page = setup();
  const causeAt = page.win.performance.now() - 120;
  page.patcher.apply({ pseq: 1, patch: patch({ item: "p1" }, [{ op: "addClass", class: "a" }]), causeAt });
  page.patcher.apply({ pseq: 2, patch: patch({ item: "p4" }, [{ op: "addClass", class: "a" }]) });
  await page.frames();
  assert.ok(page.reports[0].ms >= 120, `from the cause: ${page.reports[0].ms}`);
  assert.ok(page.reports[1].ms >= 0 && page.reports[1].ms < 120, `from receipt: ${page.reports[1].ms}`);
  // Both were written in one frame and reported after it, before the next frame's callbacks.
  assert.ok(page.reports[0].ms - page.reports[1].ms >= 119, `${page.reports[0].ms} vs ${page.reports[1].ms}`);
});

test("the same patch twice is applied once", async () => {
  const page = setup();
  const p = patch({ slot: "recs" }, [{ op: "reorder", keys: ["r4"] }]);
  page.patcher.apply({ pseq: 1, patch: p });
  await page.frames();
  const after = page.body();
  page.patcher.apply({ pseq: 2, patch: structuredClone(p) });
  await page.frames();
  assert.equal(page.body(), after);
  assert.equal(page.reports.length, 1);
});

test("a new patch under a known id replaces the old one: revert, then apply", async () => {
  const page = setup();
  const before = page.body();
  const first = patch({ slot: "cta" }, [{ op: "setText", text: "First" }, { op: "addClass", class: "hot" }]);
  page.patcher.apply({ pseq: 1, patch: first });
  await page.frames();
  page.patcher.apply({ pseq: 2, patch: { ...first, ops: [{ op: "setAttr", name: "title", value: "Second" }] } });
  await page.frames();
  const a = page.$("a");
  assert.equal(a.innerHTML, "Buy <b>now</b>");
  assert.equal(a.className, "btn  is-muted");
  assert.equal(a.title, "Second");
  page.patcher.revert(first.id);
  await page.frames();
  assert.equal(page.body(), before);
});

test("ttl reverts the patch and reports why", async () => {
  const page = setup();
  const p = patch({ item: "p1" }, [{ op: "addClass", class: "ma-emphasis" }], { ttl: 40 });
  page.patcher.apply({ pseq: 1, patch: p });
  await page.frames();
  assert.ok(page.$(".ma-emphasis"));
  await new Promise((r) => setTimeout(r, 80));
  await page.frames();
  assert.equal(page.$(".ma-emphasis"), null);
  assert.deepEqual(page.reports.map((r) => [r.status, r.reason]), [["applied", undefined], ["reverted", "ttl"]]);
});

test("a target that matches nothing fails and leaves the page alone", async () => {
  const page = setup();
  const before = page.body();
  page.patcher.apply({ pseq: 1, patch: patch({ item: "nope" }, [{ op: "addClass", class: "a" }]) });
  await page.frames();
  assert.deepEqual(page.reports.map((r) => [r.status, r.reason]), [["failed", "target"]]);
  assert.equal(page.body(), before);
});

test("a missing template fails the whole patch and undoes the ops before it", async () => {
  const page = setup();
  const before = page.body();
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "addClass", class: "a" }, { op: "template", id: "ma-missing" }]) });
  await page.frames();
  assert.deepEqual(page.reports.map((r) => [r.status, r.reason]), [["failed", "template"]]);
  assert.equal(page.body(), before);
});

test("an item target applies to every element carrying the key", async () => {
  const page = setup(`<b data-ma-item="k"></b><i data-ma-item="k"></i>`);
  page.patcher.apply({ pseq: 1, patch: patch({ item: "k" }, [{ op: "addClass", class: "x" }]) });
  await page.frames();
  assert.equal(page.doc.querySelectorAll(".x").length, 2);
});

test("subscribe() receives patches for its slot instead of the DOM, and their reverts", async () => {
  const page = setup();
  const before = page.body();
  const got = [];
  const unsubscribe = page.patcher.subscribe("recs", (p) => got.push(p));
  const p = patch({ slot: "recs" }, [{ op: "reorder", keys: ["r4", "r3"] }]);
  page.patcher.apply({ pseq: 1, patch: p });
  await page.frames();
  assert.deepEqual(got, [p]);
  assert.equal(page.body(), before, "a delegated patch never touches the DOM");
  assert.equal(page.reports[0].status, "delegated");

  page.patcher.revert(p.id);
  assert.deepEqual(got[1], { id: p.id, target: { slot: "recs" }, ops: [{ op: "revert" }] });
  assert.equal(page.reports[1].status, "reverted");

  unsubscribe();
  page.patcher.apply({ pseq: 2, patch: { ...p, id: "again" } });
  await page.frames();
  assert.equal(got.length, 2);
  assert.equal(page.reports[2].status, "applied");
  assert.equal(page.$("ul").firstElementChild.textContent, "R4");
});

test("an unsubscribed component gets no revert of a patch it was given (ttl, revert, revertAll)", async () => {
  const page = setup();
  const got = [];
  const unsubscribe = page.patcher.subscribe("recs", (p) => got.push(p.ops[0].op));
  const p = patch({ slot: "recs" }, [{ op: "reorder", keys: ["r4", "r3"] }]);
  page.patcher.apply({ pseq: 1, patch: p });
  page.patcher.apply({ pseq: 2, patch: { ...p, id: "second" } });
  await page.frames();
  assert.deepEqual(got, ["reorder", "reorder"]);
  unsubscribe(); // e.g. the component unmounted
  page.patcher.revert(p.id);
  page.patcher.revertAll();
  await page.frames();
  assert.deepEqual(got, ["reorder", "reorder"]);
});

test("a throwing subscriber does not stop the others", async () => {
  const page = setup();
  const got = [];
  page.patcher.subscribe("cta", () => {
    throw new Error("component bug");
  });
  page.patcher.subscribe("cta", (p) => got.push(p.id));
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "show" }], { id: "s1" }) });
  assert.deepEqual(got, ["s1"]);
  assert.equal(page.reports[0].status, "delegated");
});

test("revertAll() undoes every live patch", async () => {
  const page = setup();
  const before = page.body();
  page.patcher.apply({ pseq: 1, patch: patch({ item: "p1" }, [{ op: "addClass", class: "a" }]) });
  page.patcher.apply({ pseq: 2, patch: patch({ slot: "recs" }, [{ op: "reorder", keys: ["r4", "r3", "r2", "r1"] }]) });
  page.patcher.apply({ pseq: 3, patch: patch({ slot: "cta" }, [{ op: "setStyle", prop: "opacity", value: "0.5" }]) });
  await page.frames();
  assert.notEqual(page.body(), before);
  page.patcher.revertAll();
  await page.frames();
  assert.equal(page.body(), before);
  assert.deepEqual(page.reports.slice(3).map((r) => r.status), ["reverted", "reverted", "reverted"]);
});

test("two patches on one element revert in any order to the exact original", async () => {
  const page = setup();
  const before = page.body();
  const a = patch({ slot: "cta" }, [{ op: "addClass", class: "x" }, { op: "setStyle", prop: "opacity", value: "0.5" }]);
  const b = patch({ slot: "cta" }, [{ op: "addClass", class: "y" }, { op: "setStyle", prop: "font-size", value: "2em" }]);
  page.patcher.apply({ pseq: 1, patch: a });
  page.patcher.apply({ pseq: 2, patch: b });
  await page.frames();
  assert.equal(page.$("a").className, "btn is-muted x y");
  page.patcher.revert(a.id);
  await page.frames();
  assert.equal(page.$("a").className, "btn is-muted y");
  page.patcher.revert(b.id);
  await page.frames();
  assert.equal(page.body(), before);
});

test("a template or notify patch waits for the lazily loaded chunk; other patches do not", async () => {
  let arrive;
  const page = setup(PAGE, { loadExtra: () => new Promise((resolve) => (arrive = () => resolve(extra))) });
  const toast = patch({ slot: "cta" }, [{ op: "addClass", class: "hot" }, { op: "notify", kind: "toast", text: "Saved" }]);
  page.patcher.apply({ pseq: 1, patch: toast });
  page.patcher.apply({ pseq: 2, patch: patch({ item: "p1" }, [{ op: "addClass", class: "a" }]) });
  await page.frames();
  assert.deepEqual(page.reports.map((r) => [r.pseq, r.status]), [[2, "applied"]]);
  assert.equal(page.$(".ma-toast"), null);
  assert.ok(!page.$("a").classList.contains("hot"), "no op of the waiting patch is written before the chunk is there");
  arrive();
  await page.frames();
  assert.deepEqual(page.reports.map((r) => [r.pseq, r.status]), [[2, "applied"], [1, "applied"]]);
  assert.equal(page.$(".ma-toast").firstChild.textContent, "Saved");
});

test("a chunk that cannot be loaded fails its patches with extra_unavailable, and the next one tries again", async () => {
  let tries = 0;
  const page = setup(PAGE, { loadExtra: async () => (++tries == 1 ? Promise.reject(new Error("offline")) : extra) });
  const before = page.body();
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "addClass", class: "a" }, { op: "template", id: "ma-offer" }]) });
  page.patcher.apply({ pseq: 2, patch: patch({ item: "p4" }, [{ op: "notify", kind: "badge", text: "Hot" }]) });
  await page.frames(3);
  assert.deepEqual(page.reports.map((r) => [r.pseq, r.status, r.reason]), [[1, "failed", "extra_unavailable"], [2, "failed", "extra_unavailable"]]);
  assert.equal(page.body(), before, "a failed patch is undone entirely");
  assert.equal(tries, 1, "patches waiting together share one attempt");
  page.patcher.apply({ pseq: 3, patch: patch({ item: "p4" }, [{ op: "notify", kind: "badge", text: "Hot" }]) });
  await page.frames(3);
  assert.equal(page.reports[2].status, "applied");
  assert.equal(tries, 2);
});

test("without a loader (no tracker script to load it from), template and notify fail with extra_unavailable", async () => {
  const page = setup(PAGE, { loadExtra: undefined });
  page.patcher.apply({ pseq: 1, patch: patch({ item: "p4" }, [{ op: "notify", kind: "badge", text: "Hot" }]) });
  await page.frames(3);
  assert.deepEqual(page.reports.map((r) => [r.status, r.reason]), [["failed", "extra_unavailable"]]);
});

test("a patch reverted while the chunk loads is never written", async () => {
  let arrive;
  const page = setup(PAGE, { loadExtra: () => new Promise((resolve) => (arrive = () => resolve(extra))) });
  const before = page.body();
  const p = patch({ slot: "explore" }, [{ op: "template", id: "ma-offer" }]);
  page.patcher.apply({ pseq: 1, patch: p });
  page.patcher.revert(p.id);
  await page.frames();
  arrive();
  await page.frames();
  assert.equal(page.body(), before);
  assert.deepEqual(page.reports.map((r) => r.status), ["reverted"]);
});
