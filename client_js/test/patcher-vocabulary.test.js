// The client's half of "patches are data, never code" (PROTOCOL §5.1): the patcher applies every
// patch of protocol/vectors/patches/valid.json and refuses every one of invalid.json and xss.json
// with the same path the server reports, leaving the page untouched. It also refuses targets no
// patch may write into, whatever the rule's selector says.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";
import { createPatcher } from "../src/patcher/index.js";
import * as extra from "../src/patcher/extra.js";

const loadExtra = async () => extra; // the lazily loaded chunk (template, notify)

const vectors = (name) => JSON.parse(readFileSync(new URL(`../../protocol/vectors/patches/${name}.json`, import.meta.url))).patches;

// Everything the valid vectors target, in the demo's markup contract (docs/ARCHITECTURE.md).
const PAGE = `
<section data-ma-slot="grid">
  <article data-ma-item="p1" data-ma-tags="sneakers">P1</article>
  <article data-ma-item="p4" data-ma-tags="watches luxury">P4</article>
</section>
<ul data-ma-slot="recs"><li data-ma-item="r1">R1</li><li data-ma-item="r2">R2</li><li data-ma-item="r3">R3</li></ul>
<a data-ma-slot="cta" class="is-muted" href="/cart">Buy</a>
<div data-ma-slot="discount" hidden><span data-ma-text="msg"></span></div>
<div data-ma-slot="explore">Explore</div>
<template id="ma-offer"><aside><b data-ma-text="title"></b><p data-ma-text="body"></p></aside></template>
<template id="ma-scripted"><p>hi</p><script>window.__pwned = 1</script></template>
<script></script><style></style>
<svg><script></script></svg>`;

async function run(patch) {
  const { window: win } = new JSDOM(`<!doctype html><html><head><title>t</title></head><body>${PAGE}</body></html>`, { pretendToBeVisual: true });
  const reports = [];
  const patcher = createPatcher({ report: (r) => reports.push(r), root: win.document, win, loadExtra });
  const before = win.document.documentElement.outerHTML;
  patcher.apply({ pseq: 1, patch });
  await new Promise((r) => win.requestAnimationFrame(() => win.requestAnimationFrame(() => win.requestAnimationFrame(r))));
  const unchanged = win.document.documentElement.outerHTML == before;
  win.close();
  return { report: reports[0], reports, unchanged };
}

test("every valid vector is applied", async () => {
  for (const v of vectors("valid")) {
    const { report } = await run(v.patch);
    assert.equal(report?.status, "applied", `${v.name}: ${JSON.stringify(report)}`);
  }
});

test("every invalid vector is refused with the server's path, the page untouched", async () => {
  for (const v of vectors("invalid")) {
    const { reports, unchanged } = await run(v.patch);
    assert.deepEqual(reports.map((r) => [r.status, r.reason]), [["refused", v.path]], v.name);
    assert.ok(unchanged, v.name);
  }
});

test("every XSS vector is refused, the page untouched", async () => {
  const all = vectors("xss");
  assert.ok(all.length >= 50);
  for (const v of all) {
    const { reports, unchanged } = await run(v.patch);
    assert.deepEqual(reports.map((r) => r.status), ["refused"], v.name);
    assert.ok(unchanged, v.name);
  }
});

const base = { id: "x", rule: "r", ttl: 0, priority: 0, cause: 0 };

for (const sel of ["script", "style", "head > title", "svg script", "template", "body > script:empty"]) {
  test(`a selector reaching into <${sel}> is refused: setText there would run or inject code`, async () => {
    const { reports, unchanged } = await run({ ...base, target: { sel }, ops: [{ op: "setText", text: "window.__pwned = 1" }] });
    assert.deepEqual(reports.map((r) => [r.status, r.reason]), [["refused", "target"]]);
    assert.ok(unchanged);
  });
}

test("a selector the browser cannot parse is refused", async () => {
  const { reports } = await run({ ...base, target: { sel: "a[" }, ops: [{ op: "show" }] });
  assert.deepEqual(reports.map((r) => [r.status, r.reason]), [["refused", "target"]]);
});

test("a page template that contains a script is never inserted", async () => {
  const { reports, unchanged } = await run({ ...base, target: { slot: "explore" }, ops: [{ op: "template", id: "ma-scripted" }] });
  assert.deepEqual(reports.map((r) => [r.status, r.reason]), [["failed", "template"]]);
  assert.ok(unchanged);
});

test("template slot names are looked up as own properties only", async () => {
  const { window: win } = new JSDOM(`<body><div data-ma-slot="s"></div><template id="t"><i data-ma-text="constructor">keep</i></template></body>`, { pretendToBeVisual: true });
  const reports = [];
  createPatcher({ report: (r) => reports.push(r), root: win.document, win, loadExtra }).apply({ pseq: 1, patch: { ...base, target: { slot: "s" }, ops: [{ op: "template", id: "t", slots: {} }] } });
  await new Promise((r) => win.requestAnimationFrame(() => win.requestAnimationFrame(r)));
  assert.equal(win.document.querySelector("[data-ma-slot=s] i").textContent, "keep");
});
