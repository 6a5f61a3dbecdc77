// The patcher in real Chromium, driven directly on a static test page (no microadjust server):
// the module is bundled with esbuild here and served by a tiny node http server, optionally under
// a strict CSP with Trusted Types enforced. It proves (1) no XSS vector executes, (2) demo-like
// patches cause no layout shift (CLS <= 0.01), (3) a framework that keeps resetting the DOM
// ends in the loop guard's report, plus reduced motion and the CSP-safe notify stylesheet.
// The template/notify code (extra.js) is built and served as /microadjust-extra.js, next to the
// patcher's script, and reached through createPatcher's `loadExtra` import(), so every notify and
// template patch here also proves a lazy import() works under the strict CSP with Trusted Types
// (`trusted-types 'none'`: no policy, no <script src> from script). The shipped build bundles
// extra.js into the patcher chunk instead (client_js/src/patcher/chunk.js); that chunk's own lazy
// load on the demo server is e2e/patcher-lazy.spec.mjs.
import { test, expect } from "@playwright/test";
import { build } from "esbuild";
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ENGINE_XSS = JSON.parse(readFileSync(join(ROOT, "protocol/vectors/patches/xss.json"), "utf8")).patches;

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; require-trusted-types-for 'script'; trusted-types 'none'";

// Runs in the page before anything else: every way a payload could show it ran leaves a mark.
const HARNESS = `
window.__hits = [];
const hit = (what) => window.__hits.push(what);
window.alert = window.confirm = window.prompt = (x) => hit("dialog " + x);
Object.defineProperty(window, "__pwned", { set: (v) => hit("__pwned " + v), get: () => undefined });
document.addEventListener("securitypolicyviolation", (e) => hit("csp " + e.violatedDirective + " " + e.blockedURI));
window.__reports = [];
window.__patcher = MAPatcher.createPatcher({ report: (r) => window.__reports.push(r) });
window.__apply = (patches) => patches.forEach((patch, i) => window.__patcher.apply({ pseq: i + 1, patch }));
window.__frames = (n = 3) => new Promise((r) => { const step = () => (--n ? requestAnimationFrame(step) : r()); requestAnimationFrame(step); });
`;

// A React-like component that owns the button's className and re-renders it in a loop.
const FRAMEWORK = `setInterval(() => { const b = document.querySelector("#fight"); if (b.className != "btn") b.className = "btn"; }, 16);`;

const CSS = `
body { margin: 0; font: 16px/1.5 sans-serif; }
.grid { display: grid; grid-template-columns: repeat(4, 150px); gap: 12px; padding: 12px; }
.product { height: 120px; border: 1px solid #ccc; transition: transform .2s, box-shadow .2s; }
/* emphasis that moves nothing around it: outline, box-shadow, transform */
.ma-emphasis { outline: 3px solid #f59e0b; box-shadow: 0 0 0 6px #fde68a; transform: scale(1.03); }
.recs { list-style: none; margin: 0; padding: 0 12px; }
/* a sidebar list: reorder moves items on purpose, and Chrome counts the move as a shift of
   their area times the distance, so recommendation items stay compact */
.recs li { width: 220px; height: 32px; }
.cta { display: inline-block; width: 240px; height: 40px; overflow: hidden; white-space: nowrap; }
/* reserved space: revealing or filling these slots moves nothing below them */
.reserve { min-height: 64px; }
.explore { position: fixed; top: 8px; right: 8px; }
footer { height: 400px; }
`;

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>patcher</title>
<link rel="stylesheet" href="/styles.css">
<script src="/patcher.js"></script><script src="/harness.js"></script></head><body>
<section class="grid" data-ma-slot="grid">
  ${[1, 2, 3, 4, 5, 6, 7, 8].map((n) => `<article class="product" data-ma-item="p${n}" data-ma-tags="${n % 2 ? "watches luxury" : "sneakers"}">Product ${n}</article>`).join("\n  ")}
</section>
<ul class="recs" data-ma-slot="recs">
  ${[1, 2, 3, 4, 5, 6].map((n) => `<li data-ma-item="r${n}">Recommendation ${n}</li>`).join("\n  ")}
</ul>
<a class="cta" data-ma-slot="cta" href="#">Add to cart</a>
<div class="reserve"><div data-ma-slot="discount" hidden>Discount: <span data-ma-text="msg"></span></div></div>
<div class="reserve" data-ma-slot="offer"></div>
<div class="explore" data-ma-slot="explore" hidden>Explore more</div>
<button id="fight" class="btn" data-ma-slot="fight">Fight</button>
<div data-ma-slot="shift-me"></div>
<template id="ma-offer"><aside><b data-ma-text="title"></b> <span data-ma-text="body"></span></aside></template>
<template id="ma-scripted"><p>x</p><script>window.__pwned = "template"</script></template>
<script></script>
<footer></footer>
</body></html>`;

let server;
let base;

test.beforeAll(async () => {
  const bundle = await build({
    entryPoints: [join(ROOT, "client_js/src/patcher/index.js")],
    bundle: true,
    format: "iife",
    globalName: "MAPatcher",
    write: false,
  });
  // extra.js as a chunk of its own (createPatcher's loadExtra; the shipped build merges it in)
  const extra = await build({ entryPoints: [join(ROOT, "client_js/src/patcher/extra.js")], bundle: true, format: "esm", minify: true, write: false });
  const files = {
    "/patcher.js": ["text/javascript", bundle.outputFiles[0].text],
    "/microadjust-extra.js": ["text/javascript", extra.outputFiles[0].text],
    "/harness.js": ["text/javascript", HARNESS],
    "/framework.js": ["text/javascript", FRAMEWORK],
    "/styles.css": ["text/css", CSS],
  };
  server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname == "/page") {
      const head = { "content-type": "text/html" };
      if (url.searchParams.has("csp")) head["content-security-policy"] = CSP;
      res.writeHead(200, head).end(url.searchParams.has("fight") ? PAGE.replace("</body>", `<script src="/framework.js"></script></body>`) : PAGE);
    } else if (files[url.pathname]) {
      res.writeHead(200, { "content-type": files[url.pathname][0] }).end(files[url.pathname][1]);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
});

test.afterAll(() => new Promise((r) => server.close(r)));

/** Opens the test page and records anything a payload could cause outside the page's JS. */
async function open(page, query = "") {
  const outside = [];
  page.on("dialog", (d) => {
    outside.push("dialog " + d.message());
    d.dismiss();
  });
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (!r.url().startsWith(base) || !["/page", "/patcher.js", "/microadjust-extra.js", "/harness.js", "/framework.js", "/styles.css", "/favicon.ico"].includes(path)) outside.push("request " + r.url());
  });
  page.on("pageerror", (e) => outside.push("error " + e.message));
  await page.goto(`${base}/page${query}`);
  return outside;
}

const patch = (id, target, ops, extra = {}) => ({ id, rule: "e2e", target, ops, ttl: 0, priority: 0, cause: 0, ...extra });

// Hostile patches of our own that stay inside the vocabulary's syntax (or just outside it): the
// patcher must refuse them or apply them inertly.
const OWN_XSS = [
  patch("own-1", { sel: "script" }, [{ op: "setText", text: "window.__pwned = 'script text'" }]),
  patch("own-2", { sel: "body > script:empty" }, [{ op: "setText", text: "alert(1)" }]),
  patch("own-3", { sel: "style, link" }, [{ op: "setText", text: "body{background:red}" }]),
  patch("own-4", { sel: "head title" }, [{ op: "setText", text: "alert(1)" }]),
  patch("own-5", { slot: "offer" }, [{ op: "template", id: "ma-scripted" }]),
  patch("own-6", { slot: "cta" }, [{ op: "setAttr", name: "onmouseover", value: "alert(1)" }]),
  patch("own-7", { slot: "cta" }, [{ op: "setAttr", name: "href", value: "javascript:alert(1)" }]),
  patch("own-8", { slot: "cta" }, [{ op: "setAttr", name: "data-x", value: "java\u0000script:alert(1)" }]),
  patch("own-9", { slot: "cta" }, [{ op: "setStyle", prop: "background-image", value: "url(/x)" }]),
  patch("own-10", { slot: "cta" }, [{ op: "setStyle", prop: "color", value: "red;background:url(/x)" }]),
  patch("own-11", { slot: "cta" }, [{ op: "setStyle", prop: "transform", value: "image-set(x)" }]),
  patch("own-12", { slot: "cta" }, [{ op: "notify", kind: "toast", text: "&lt;img src=x onerror=alert(1)&gt;" }]),
  patch("own-13", { slot: "cta" }, [{ op: "template", id: "ma-offer", slots: { title: "<img src=x onerror=alert(1)>" } }]),
  patch("own-14", { slot: "cta" }, [{ op: "innerHTML", html: "<img src=x onerror=alert(1)>" }]),
  patch("own-15", { slot: "cta" }, [{ op: "setAttr", name: "data-ma-slot", value: "x" }]),
  // inside the vocabulary: applied, and inert because the text never becomes markup or code
  patch("own-16", { slot: "cta" }, [{ op: "setText", text: "alert(1) // window.__pwned = 1" }]),
  patch("own-17", { slot: "cta" }, [{ op: "setAttr", name: "data-onload", value: "alert(1)" }]),
  patch("own-18", { slot: "offer" }, [{ op: "template", id: "ma-offer", slots: { title: "alert(1)", body: "2 <3 x" } }]),
];

for (const mode of ["no CSP", "strict CSP with Trusted Types"]) {
  test(`${ENGINE_XSS.length + OWN_XSS.length} XSS vectors fed through the patcher execute nothing (${mode})`, async ({ page }) => {
    expect(ENGINE_XSS.length + OWN_XSS.length).toBeGreaterThanOrEqual(50);
    const outside = await open(page, mode == "no CSP" ? "" : "?csp");
    await page.evaluate((patches) => window.__apply(patches), [...ENGINE_XSS.map((v) => v.patch), ...OWN_XSS]);
    await page.evaluate(() => window.__frames(4));
    await page.mouse.move(200, 400); // would fire any injected mouseover handler
    await page.waitForTimeout(300); // let image errors and the like fire
    const { hits, reports } = await page.evaluate(() => ({ hits: window.__hits, reports: window.__reports }));
    expect(hits).toEqual([]);
    expect(outside).toEqual([]);
    // each engine vector by its pseq (some carry a hostile id), ours by id
    for (const [i, v] of ENGINE_XSS.entries()) expect(reports.find((r) => r.pseq == i + 1)?.status, v.name).toBe("refused");
    const status = Object.fromEntries(reports.map((r) => [r.id, r.status]));
    for (const id of ["own-1", "own-2", "own-3", "own-4", "own-6", "own-7", "own-8", "own-9", "own-10", "own-11", "own-12", "own-13", "own-14", "own-15"]) expect(status[id], id).toBe("refused");
    expect(status["own-5"]).toBe("failed");
    for (const id of ["own-16", "own-17", "own-18"]) expect(status[id], id).toBe("applied");
    expect(await page.textContent("[data-ma-slot=cta]")).toBe("alert(1) // window.__pwned = 1");
  });
}

test("demo-like patches cause no layout shift (CLS <= 0.01)", async ({ page }) => {
  const outside = await open(page, "?csp");
  await page.evaluate(() => {
    window.__cls = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
    }).observe({ type: "layout-shift", buffered: true });
  });
  await page.evaluate(() => window.__frames(10));
  const baseline = await page.evaluate(() => window.__cls);
  const steps = [
    [patch("emph", { item: "p3" }, [{ op: "addClass", class: "ma-emphasis" }])],
    [patch("premium", { sel: '[data-ma-slot="grid"] > [data-ma-tags~="luxury"]' }, [{ op: "addClass", class: "ma-emphasis" }, { op: "setStyle", prop: "border-color", value: "#b45309" }])],
    [patch("recs", { slot: "recs" }, [{ op: "reorder", keys: ["r5", "r3", "r1", "r6"] }])],
    [patch("cta", { slot: "cta" }, [{ op: "setText", text: "Still deciding? Take 10% off" }, { op: "setStyle", prop: "box-shadow", value: "0 0 0 3px #f59e0b" }])],
    [patch("discount", { slot: "discount" }, [{ op: "show" }, { op: "setAttr", name: "aria-live", value: "polite" }])],
    [patch("offer", { slot: "offer" }, [{ op: "template", id: "ma-offer", slots: { title: "Free shipping", body: "today only" } }])],
    [patch("explore", { slot: "explore" }, [{ op: "show" }])],
    [patch("badge", { item: "p6" }, [{ op: "notify", kind: "badge", text: "Hot" }])],
    [patch("toast", { slot: "cta" }, [{ op: "notify", kind: "toast", text: "Added to your cart" }]), patch("slide", { sel: "body" }, [{ op: "notify", kind: "slidein", title: "Still thinking?", text: "Your cart is saved." }])],
  ];
  for (const batch of steps) {
    await page.evaluate((b) => window.__apply(b), batch);
    await page.evaluate(() => window.__frames(20));
  }
  await page.evaluate(() => window.__patcher.revertAll());
  await page.evaluate(() => window.__frames(20));
  const { cls, reports, hits } = await page.evaluate(() => ({ cls: window.__cls, reports: window.__reports, hits: window.__hits }));
  expect(reports.filter((r) => r.status == "applied").map((r) => r.id)).toEqual(steps.flat().map((p) => p.id));
  expect(hits).toEqual([]); // the notify stylesheet needed no inline <style>: no CSP violation
  expect(outside).toEqual([]);
  console.log(`CLS while ${steps.flat().length} demo-like patches applied and reverted: ${(cls - baseline).toFixed(4)}`);
  expect(cls - baseline).toBeLessThanOrEqual(0.01);
});

test("the layout-shift measurement is live: an unreserved reveal is caught", async ({ page }) => {
  await open(page);
  await page.evaluate(() => {
    window.__cls = 0;
    new PerformanceObserver((list) => list.getEntries().forEach((e) => (window.__cls += e.value))).observe({ type: "layout-shift", buffered: true });
    document.querySelector(".grid").before(Object.assign(document.createElement("div"), { hidden: true, textContent: "banner" }));
    document.querySelector(".grid").previousElementSibling.setAttribute("data-ma-slot", "top");
  });
  await page.evaluate(() => window.__frames(10));
  await page.evaluate(() => {
    document.querySelector("[data-ma-slot=top]").style.height = "200px";
    window.__apply([{ id: "top", rule: "e2e", target: { slot: "top" }, ops: [{ op: "show" }], ttl: 0, priority: 0, cause: 0 }]);
  });
  await page.evaluate(() => window.__frames(20));
  expect(await page.evaluate(() => window.__cls)).toBeGreaterThan(0.01);
});

test("a React-like re-render loop ends with the loop guard's report and a clean element", async ({ page }) => {
  await open(page, "?csp&fight");
  await page.evaluate(() =>
    window.__apply([{ id: "fight", rule: "e2e", target: { slot: "fight" }, ops: [{ op: "addClass", class: "ma-emphasis" }, { op: "setAttr", name: "title", value: "Hot" }], ttl: 0, priority: 0, cause: 0 }]),
  );
  await expect.poll(() => page.evaluate(() => window.__reports.map((r) => `${r.status}:${r.reason || ""}`))).toEqual(["applied:", "failed:loop"]);
  await page.waitForTimeout(300);
  expect(await page.evaluate(() => window.__reports.length)).toBe(2);
  expect(await page.getAttribute("#fight", "class")).toBe("btn");
  expect(await page.getAttribute("#fight", "title")).toBeNull();
});

test("notify components are styled under a strict CSP and drop their animation for reduced motion", async ({ page }) => {
  await open(page, "?csp");
  const show = async () => {
    await page.evaluate(() => window.__apply([{ id: "t", rule: "e2e", target: { slot: "cta" }, ops: [{ op: "notify", kind: "toast", text: "Saved" }], ttl: 0, priority: 0, cause: 0 }]));
    await page.evaluate(() => window.__frames(3));
    return page.$eval(".ma-toast", (n) => ({ position: getComputedStyle(n).position, animation: getComputedStyle(n).animationName, role: n.parentElement.getAttribute("role") }));
  };
  expect(await show()).toEqual({ position: "fixed", animation: "ma-in", role: "status" });
  await page.evaluate(() => window.__patcher.revertAll());
  await page.emulateMedia({ reducedMotion: "reduce" });
  await page.evaluate(() => window.__frames(3));
  expect(await show()).toEqual({ position: "fixed", animation: "none", role: "status" });
  expect(await page.$eval("[data-ma-item=p1]", (n) => getComputedStyle(n).transitionDuration)).toBe("0s");
  expect(await page.evaluate(() => window.__hits)).toEqual([]);
});

test("the template/notify chunk is fetched on first use only, and a chunk that cannot load fails just those patches", async ({ page }) => {
  const fetched = [];
  page.on("request", (r) => r.url().endsWith("/microadjust-extra.js") && fetched.push(r.url()));
  await open(page, "?csp");
  await page.evaluate(() => window.__apply([{ id: "plain", rule: "e2e", target: { item: "p1" }, ops: [{ op: "addClass", class: "ma-emphasis" }], ttl: 0, priority: 0, cause: 0 }]));
  await page.evaluate(() => window.__frames(5));
  expect(fetched).toEqual([]); // a page that only gets class, text, style, attribute or order patches never loads it

  await page.route("**/microadjust-extra.js", (route) => route.abort());
  await page.evaluate(() =>
    window.__patcher.apply({ pseq: 2, patch: { id: "offer", rule: "e2e", target: { slot: "offer" }, ops: [{ op: "addClass", class: "x" }, { op: "template", id: "ma-offer" }], ttl: 0, priority: 0, cause: 0 } }),
  );
  await expect.poll(() => page.evaluate(() => window.__reports.map((r) => `${r.id}:${r.status}:${r.reason || ""}`))).toEqual(["plain:applied:", "offer:failed:extra_unavailable"]);
  expect(await page.getAttribute("[data-ma-slot=offer]", "class")).toBe("reserve"); // the whole patch is undone

  await page.unroute("**/microadjust-extra.js"); // the next patch that needs it tries again
  await page.evaluate(() => window.__patcher.apply({ pseq: 3, patch: { id: "toast", rule: "e2e", target: { slot: "cta" }, ops: [{ op: "notify", kind: "toast", text: "Saved" }], ttl: 0, priority: 0, cause: 0 } }));
  await expect.poll(() => page.evaluate(() => window.__reports.at(-1).status)).toBe("applied");
  expect(await page.textContent(".ma-toast")).toContain("Saved");
  expect(fetched.length).toBe(2);
  expect(await page.evaluate(() => window.__hits)).toEqual([]);
});
