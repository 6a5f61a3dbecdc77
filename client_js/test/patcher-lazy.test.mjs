// Specification of the default bundle's stand-in for the patcher (client_js/src/lazy.js): the
// patcher chunk is imported by `warm()` (the tracker calls it after `welcome`) or on a page's
// first patch, whichever comes first, and once; the patch and revert messages that
// arrive meanwhile are applied in order once it is there, subscribers registered before it
// still get their patches, and a chunk that cannot load fails the queued patches with reason
// `patcher_unavailable` (PROTOCOL §5.2) while the next patch tries again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { lazyPatcher } from "../src/lazy.js";

const chunk = () => import("../src/patcher/chunk.js"); // what dist/microadjust-patcher.js is built from
const PAGE = `<p data-ma-item="p1">P1</p><p data-ma-item="p2">P2</p><ul data-ma-slot="recs"><li data-ma-item="r1">R1</li></ul>
<div data-ma-slot="offer"></div><template id="t1"><b data-ma-text="x"></b></template>`;
let n = 0;
const patch = (target, ops) => ({ id: `l${++n}`, rule: "r", target, ops, ttl: 0, priority: 0, cause: 0 });
const msg = (p, pseq, causeAt) => ({ t: "patch", pseq, patch: p, causeAt });

function setup(load = chunk) {
  const { window: win } = new JSDOM(`<!doctype html><body>${PAGE}</body>`, { pretendToBeVisual: true });
  const reports = [];
  const loads = [];
  const patcher = lazyPatcher(() => (loads.push(1), load()), { report: (r) => reports.push(r), root: win.document, win });
  const until = async (cond) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(cond(), "timed out");
  };
  return { win, $: (s) => win.document.querySelector(s), patcher, reports, loads, until };
}

test("nothing is imported before the first patch; a revert of nothing loads nothing", async () => {
  const page = setup();
  const off = page.patcher.subscribe("recs", () => {});
  page.patcher.revert("never-applied");
  page.patcher.revertAll();
  off();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(page.loads.length, 0);
  assert.deepEqual(page.reports, []);
});

test("messages that arrive while the chunk loads are applied once, in order, by one import", async () => {
  const page = setup();
  const a = patch({ item: "p1" }, [{ op: "addClass", class: "hot" }]);
  const b = patch({ item: "p2" }, [{ op: "setText", text: "now" }]);
  const c = patch({ slot: "offer" }, [{ op: "template", id: "t1", slots: { x: "merged chunk" } }]);
  page.patcher.apply(msg(a, 1));
  page.patcher.apply(msg(b, 2));
  page.patcher.revert(a.id); // arrives after a: a is never painted (as in one tick without the chunk)
  page.patcher.apply(msg(c, 3)); // template: in the same chunk, no second request
  await page.until(() => page.reports.length == 3);
  assert.equal(page.loads.length, 1);
  assert.deepEqual(page.reports.map((r) => [r.id, r.status]), [[b.id, "applied"], [a.id, "reverted"], [c.id, "applied"]]);
  assert.equal(page.$("[data-ma-item=p1]").className, "");
  assert.equal(page.$("[data-ma-item=p2]").textContent, "now");
  assert.equal(page.$("[data-ma-slot=offer]").textContent, "merged chunk");
  // later patches go straight to the loaded patcher
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "hide" }]), 4));
  await page.until(() => page.reports.length == 4);
  assert.equal(page.loads.length, 1);
  assert.equal(page.$("[data-ma-item=p1]").hidden, true);
});

test("subscribers registered before the chunk get the queued patches; one unsubscribed before does not", async () => {
  const page = setup();
  const got = [];
  const dropped = [];
  page.patcher.subscribe("recs", (p) => got.push(p.ops[0].op));
  page.patcher.subscribe("recs", (p) => dropped.push(p))(); // unsubscribed at once
  const p = patch({ slot: "recs" }, [{ op: "reorder", keys: ["r1"] }]);
  page.patcher.apply(msg(p, 1));
  await page.until(() => page.reports.length == 1);
  assert.deepEqual(page.reports.map((r) => r.status), ["delegated"]);
  const off = page.patcher.subscribe("offer", (q) => got.push("offer:" + q.ops[0].op)); // after the load
  page.patcher.revert(p.id);
  page.patcher.apply(msg(patch({ slot: "offer" }, [{ op: "show" }]), 2));
  await page.until(() => page.reports.length == 3);
  off();
  assert.deepEqual(got, ["reorder", "revert", "offer:show"]);
  assert.deepEqual(dropped, []);
});

test("a chunk that cannot load fails every queued patch with patcher_unavailable; the next patch tries again", async () => {
  let fail = true;
  const page = setup(() => (fail ? Promise.reject(new Error("offline")) : chunk()));
  const t0 = performance.now();
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "addClass", class: "hot" }]), 1, t0 - 40)); // caused 40 ms ago
  page.patcher.apply(msg(patch({ item: "p2" }, [{ op: "addClass", class: "hot" }]), 2)); // cause unknown: from receipt
  page.patcher.revert("l-any");
  await page.until(() => page.reports.length == 2);
  assert.deepEqual(page.reports.map((r) => [r.pseq, r.status, r.reason]), [[1, "failed", "patcher_unavailable"], [2, "failed", "patcher_unavailable"]]);
  assert.ok(page.reports[0].ms >= 40 && page.reports[1].ms < 40, JSON.stringify(page.reports));
  assert.equal(page.$("[data-ma-item=p1]").className, "");
  fail = false;
  const p = patch({ item: "p1" }, [{ op: "addClass", class: "hot" }]);
  page.patcher.apply(msg(p, 3));
  await page.until(() => page.reports.length == 3);
  assert.deepEqual([page.reports[2].id, page.reports[2].status], [p.id, "applied"]);
  assert.equal(page.loads.length, 2);
  assert.equal(page.$("[data-ma-item=p1]").className, "hot");
});

test("a chunk that loads but is not the patcher fails the same way", async () => {
  const page = setup(async () => ({}));
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "show" }]), 1));
  await page.until(() => page.reports.length == 1);
  assert.equal(page.reports[0].reason, "patcher_unavailable");
});

test("`ms` of the first patch includes the chunk's load time", async () => {
  let arrive;
  const page = setup(() => new Promise((r) => (arrive = r)).then(chunk));
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "addClass", class: "hot" }]), 1, performance.now()));
  await new Promise((r) => setTimeout(r, 60));
  arrive();
  await page.until(() => page.reports.length == 1);
  assert.equal(page.reports[0].status, "applied");
  assert.ok(page.reports[0].ms >= 60, String(page.reports[0].ms));
});

test("revertAll (consent revoked) while the chunk loads drops the queued patches", async () => {
  let arrive;
  const page = setup(() => new Promise((r) => (arrive = r)).then(chunk));
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "addClass", class: "hot" }]), 1));
  page.patcher.revertAll();
  await page.until(() => arrive);
  arrive();
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(page.reports, []);
  assert.equal(page.$("[data-ma-item=p1]").className, "");
});

test("warm() imports the chunk before any patch, once; a later patch needs no second import", async () => {
  const page = setup();
  page.patcher.warm();
  page.patcher.warm();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(page.loads.length, 1);
  assert.deepEqual(page.reports, []); // nothing to report: no patch yet
  page.patcher.apply(msg(patch({ item: "p1" }, [{ op: "addClass", class: "warm" }]), 1));
  await page.until(() => page.reports.length == 1);
  assert.equal(page.loads.length, 1);
  assert.equal(page.reports[0].status, "applied");
  assert.ok(page.$("[data-ma-item=p1]").classList.contains("warm"));
});

test("a warm() that fails reports nothing; the first patch tries the import again", async () => {
  let fail = true;
  const page = setup(() => (fail ? Promise.reject(new Error("offline")) : chunk()));
  page.patcher.warm();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(page.reports, []);
  fail = false;
  page.patcher.apply(msg(patch({ item: "p2" }, [{ op: "addClass", class: "again" }]), 1));
  await page.until(() => page.reports.length == 1);
  assert.equal(page.loads.length, 2);
  assert.equal(page.reports[0].status, "applied");
});
