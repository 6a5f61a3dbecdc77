// The patcher against framework re-renders: when the page (React, Vue, ...) undoes a patch's
// effect or replaces the patched node, the patcher re-applies it; it never mistakes its own
// writes for the page's; and against a page that keeps undoing it, it gives up after
// `maxFights` re-applies, reverts cleanly and reports `failed` with reason `loop`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JSDOM } from "jsdom";
import { createPatcher } from "../src/patcher/index.js";
import * as extra from "../src/patcher/extra.js";

function setup(html, options = {}) {
  const { window: win } = new JSDOM(`<!doctype html><body>${html}</body>`, { pretendToBeVisual: true });
  const reports = [];
  const patcher = createPatcher({ report: (r) => reports.push(r), root: win.document, win, loadExtra: async () => extra, ...options });
  const frames = (n = 3) =>
    new Promise((resolve) => {
      // one frame more and a task: reports leave in a task queued by the frame that wrote
      const step = () => (n-- ? win.requestAnimationFrame(step) : win.setTimeout(resolve));
      win.requestAnimationFrame(step);
    });
  return { win, doc: win.document, patcher, reports, frames, $: (s) => win.document.querySelector(s) };
}

const patch = (target, ops, id = "p") => ({ id, rule: "r", target, ops, ttl: 0, priority: 0, cause: 0 });

test("a class reset by a re-render is put back, once", async () => {
  const page = setup(`<button data-ma-slot="cta" class="btn">Buy</button>`);
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "addClass", class: "ma-emphasis" }]) });
  await page.frames();
  page.$("button").className = "btn"; // what React does when it re-renders className
  await page.frames();
  assert.equal(page.$("button").className, "btn ma-emphasis");
  assert.deepEqual(page.reports.map((r) => r.status), ["applied"]);
});

test("a node replaced by a re-render gets the patch again", async () => {
  const page = setup(`<ul data-ma-slot="recs"><li data-ma-item="r1">a</li><li data-ma-item="r2">b</li></ul>`);
  page.patcher.apply({ pseq: 1, patch: patch({ item: "r2" }, [{ op: "setAttr", name: "aria-current", value: "true" }, { op: "notify", kind: "badge", text: "New" }]) });
  await page.frames();
  const fresh = page.doc.createElement("li");
  fresh.setAttribute("data-ma-item", "r2");
  fresh.textContent = "b";
  page.$("[data-ma-item=r2]").replaceWith(fresh);
  await page.frames();
  assert.equal(fresh.getAttribute("aria-current"), "true");
  assert.equal(fresh.querySelector(".ma-badge").textContent, "New");
  assert.equal(page.doc.querySelectorAll(".ma-badge").length, 1);
  page.patcher.revert("p");
  await page.frames();
  assert.equal(page.$("ul").innerHTML, `<li data-ma-item="r1">a</li><li data-ma-item="r2">b</li>`);
});

test("what the page rewrote is the page's: revert keeps the page's newer text", async () => {
  const page = setup(`<p data-ma-slot="msg">old</p>`);
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "msg" }, [{ op: "setText", text: "patched" }]) });
  await page.frames();
  page.$("p").textContent = "rendered by the app";
  await page.frames();
  assert.equal(page.$("p").textContent, "patched");
  page.patcher.revert("p");
  await page.frames();
  assert.equal(page.$("p").textContent, "rendered by the app");
});

test("the patcher's own writes never count as fights", async () => {
  const page = setup(`<div data-ma-slot="a" class="x">a</div><ul data-ma-slot="l"><li data-ma-item="1"></li><li data-ma-item="2"></li></ul>`, { maxFights: 0 });
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "a" }, [{ op: "addClass", class: "y" }, { op: "setStyle", prop: "opacity", value: "0.5" }], "p1") });
  page.patcher.apply({ pseq: 2, patch: patch({ slot: "l" }, [{ op: "reorder", keys: ["2", "1"] }], "p2") });
  page.patcher.apply({ pseq: 3, patch: patch({ slot: "a" }, [{ op: "notify", kind: "toast", text: "hi" }], "p3") });
  await page.frames();
  page.patcher.revert("p3");
  await page.frames();
  page.$("[data-ma-slot=a]").setAttribute("data-unrelated", "1"); // a page mutation wakes the watcher
  await page.frames();
  assert.deepEqual(page.reports.map((r) => r.status), ["applied", "applied", "applied", "reverted"]);
  assert.equal(page.$("[data-ma-slot=a]").className, "x y");
});

test("a slot that disappears during a re-render and comes back gets the patch", async () => {
  const page = setup(`<main><a data-ma-slot="cta">Buy</a></main>`);
  page.patcher.apply({ pseq: 1, patch: patch({ slot: "cta" }, [{ op: "addClass", class: "hot" }]) });
  await page.frames();
  page.$("main").replaceChildren();
  await page.frames();
  page.$("main").innerHTML = `<a data-ma-slot="cta">Buy</a>`;
  await page.frames();
  assert.equal(page.$("a").className, "hot");
});

test("against a framework that keeps resetting, the loop guard gives up after maxFights and reverts", async () => {
  const page = setup(`<button data-ma-slot="cta" class="btn">Buy</button>`, { maxFights: 3 });
  const button = page.$("button");
  // A fake framework that owns className and re-renders it whenever it changes.
  let renders = 0;
  new page.win.MutationObserver(() => {
    if (button.className != "btn") {
      renders++;
      button.className = "btn";
    }
  }).observe(button, { attributes: true });
  page.patcher.apply({ pseq: 7, patch: patch({ slot: "cta" }, [{ op: "addClass", class: "ma-emphasis" }, { op: "setAttr", name: "title", value: "Hot" }]) });
  await page.frames(12);
  assert.deepEqual(page.reports.map((r) => [r.id, r.pseq, r.status, r.reason]), [["p", 7, "applied", undefined], ["p", 7, "failed", "loop"]]);
  assert.equal(renders, 4, "the first apply and three re-applies, then no more");
  assert.equal(button.className, "btn");
  assert.equal(button.hasAttribute("title"), false, "the ops the page did not fight are reverted too");
  await page.frames(6);
  assert.equal(renders, 4);
});
