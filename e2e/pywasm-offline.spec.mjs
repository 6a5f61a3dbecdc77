// Offline mode for the tracker (issue 7, docs/PYWASM.md "Offline mode") in real Chromium.
//
// The demo shop is served by a small static server here, as a site that hosts its own assets
// would (the tracker and its patcher chunk, pywasm/offline.mjs + loader.mjs + pywasm/dist/), with
// `script-src 'self' 'wasm-unsafe-eval'`; its socket goes to a private `microadjust serve
// --public-rules --site demo=ORIGIN`. The rule snapshot is fetched while online, then the server is
// stopped: past the threshold the page loads the engine under Pyodide, and a hover past the intent
// threshold gets its emphasis from the local engine. The server restarts: the local patch is
// reverted, the queued events are stored by the server and its own patch applies.
//
// Needs `npm run build:pywasm` and the tracker build (`node client_js/build.mjs`).
import { test, expect, startServer, ROOT } from "./fixtures.mjs";
import http from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, extname } from "node:path";
import { createBatcher } from "../client_js/src/batcher.js";
import { readBuffer, BUFFER_KEY, SNAPSHOT_KEY } from "../pywasm/offline.mjs";

const STATIC = join(ROOT, "server", "microadjust", "static");
const DEMO = join(ROOT, "server", "microadjust", "demo");
const PYWASM = join(ROOT, "pywasm");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".zip": "application/zip", ".whl": "application/zip" };
const CSP = "script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'";

// The tracker's buffer format is what offline.mjs reads (sessionStorage "ma_q" as batcher.js
// persists it): this fails when either side changes it.
test("offline.mjs reads the tracker's unacked buffer exactly as the tracker writes it", async () => {
  const tracker = readFileSync(join(ROOT, "client_js", "src", "tracker.js"), "utf8");
  expect(tracker).toContain(`const K_QUEUE = "${BUFFER_KEY}";`);
  expect(tracker).toMatch(/save: \(q\) => save\(SESSION, K_QUEUE, q\)/);
  const store = new Map();
  const storage = { getItem: (k) => (store.has(k) ? store.get(k) : null) };
  const timers = { setTimeout: () => 1, clearTimeout: () => {} };
  // As tracker.js wires it: store.js save() is JSON.stringify into sessionStorage.
  const batcher = createBatcher({ send: () => false, save: (q) => store.set(BUFFER_KEY, JSON.stringify(q)), timers });
  const hover = { k: "hover", ts: 1, item: "p1", dur: 2100, phase: "intent" };
  batcher.push({ k: "view", ts: 1, url: "/shop", title: "Shop", items: [] }, true);
  batcher.push(hover, true);
  await Promise.resolve(); // urgent events are flushed (and persisted) at the end of the task
  expect(readBuffer(storage)).toEqual({ next: 3, events: [{ k: "view", ts: 1, url: "/shop", title: "Shop", items: [], seq: 1 }, { ...hover, seq: 2 }] });
  batcher.ack(1);
  expect(readBuffer(storage)).toEqual({ next: 3, events: [{ ...hover, seq: 2 }] });
  store.set(BUFFER_KEY, JSON.stringify({ next: 3, queue: [] })); // another format: refused, not misread
  expect(readBuffer(storage)).toBeNull();
});

let site, srv;
test.beforeAll(async () => {
  for (const f of [join(PYWASM, "dist", "manifest.json"), join(STATIC, "microadjust.js"), join(STATIC, "microadjust-patcher.js")])
    if (!existsSync(f)) throw new Error(`missing ${f}: run npm run build:pywasm and node client_js/build.mjs`);
  site = http.createServer((q, r) => {
    const path = new URL(q.url, "http://x").pathname;
    let file;
    if (path === "/" || path === "/shop") {
      const html = readFileSync(join(DEMO, "shop.html"), "utf8").replace(
        '<script src="/microadjust.js" data-site="demo" async></script>',
        `<script src="/microadjust.js" data-site="demo" data-endpoint="${site.endpoint}" async></script>\n` +
          '  <script type="module" src="/pywasm/offline.mjs" data-after-ms="1000"></script>',
      );
      if (!html.includes("offline.mjs")) return r.writeHead(500).end("demo shop changed: no tracker tag to extend");
      return r.writeHead(200, { "content-type": "text/html", "content-security-policy": CSP }).end(html);
    }
    if (path === "/microadjust.js" || path === "/microadjust-patcher.js") file = join(STATIC, path.slice(1));
    else if (path.startsWith("/demo/")) file = join(DEMO, path.slice(6));
    else if (path === "/pywasm/offline.mjs" || path === "/pywasm/loader.mjs") file = join(PYWASM, path.slice(8));
    else if (path.startsWith("/pywasm/")) file = join(PYWASM, "dist", path.slice(8));
    if (!file || file.includes("..") || !existsSync(file) || !statSync(file).isFile()) return r.writeHead(404).end();
    site.served.push(path);
    r.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" }).end(readFileSync(file));
  });
  site.served = [];
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  site.origin = `http://127.0.0.1:${site.address().port}`;
  srv = await startServer(["--public-rules", "--site", `demo=${site.origin}`]);
  site.endpoint = srv.url.replace("http", "ws") + "/v1/stream";
});
test.afterAll(async () => {
  await srv?.cleanup();
  site?.close();
});

test("socket down: the local engine emphasises a hovered product; socket back: reverted, events stored, server patch applies", async ({ page }) => {
  test.setTimeout(180_000);
  await page.addInitScript(() => {
    window.__off = [];
    window.__patches = [];
    document.addEventListener("microadjust:offline", (e) => window.__off.push(e.detail));
    document.addEventListener("microadjust:patch", (e) => window.__patches.push(e.detail));
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(site.origin + "/shop");
  const state = () => page.evaluate(() => window.microadjust.state());
  await expect.poll(async () => (await state()).state).toBe("open");
  // Online: the snapshot is fetched (cross-origin, Origin allowed) and kept for later.
  await expect.poll(() => page.evaluate((k) => sessionStorage.getItem(k), SNAPSHOT_KEY)).not.toBeNull();
  const snap = JSON.parse(await page.evaluate((k) => sessionStorage.getItem(k), SNAPSHOT_KEY));
  expect(JSON.parse(snap.rules).rules.map((r) => r.id)).toContain("hover-emphasis");
  // Nothing of Pyodide is fetched while the socket is up.
  expect(site.served.filter((p) => p.startsWith("/pywasm/") && p !== "/pywasm/offline.mjs")).toEqual([]);
  const { sid } = await state();

  await srv.stop();
  await expect.poll(async () => (await state()).state).not.toBe("open");
  const down = Date.now();
  await expect.poll(() => page.evaluate(() => window.__off.map((d) => d.state).filter(Boolean)), { timeout: 120_000 }).toContain("active");
  const loadMs = Date.now() - down;
  expect(site.served).toContain("/pywasm/pyodide.asm.wasm");

  const p1 = page.locator('[data-ma-item="p1"]');
  await expect(p1).not.toHaveClass(/ma-emphasis/);
  await p1.hover();
  await expect(p1).toHaveClass(/ma-emphasis/, { timeout: 15_000 });
  const local = await page.evaluate(() => window.__off.filter((d) => d.report).map((d) => d.report));
  console.log("local patch reports while offline:", JSON.stringify(local));
  expect(local).toContainEqual(expect.objectContaining({ id: "hover-emphasis:p1", status: "applied" }));
  const applied = local.filter((r) => r.status === "applied").map((r) => r.id);
  expect(await page.evaluate(() => window.__patches)).toEqual([]); // nothing from the tracker's own patcher
  // The events still queue for the server: the hover intent is in the tracker's buffer.
  const queue = await page.evaluate(() => JSON.parse(sessionStorage.getItem("ma_q")).b);
  const buffered = queue.map((e) => e[1]);
  expect(buffered).toEqual(expect.arrayContaining([expect.objectContaining({ k: "hover", item: "p1", phase: "intent" })]));
  const pending = buffered.length;
  const lastQueued = queue.at(-1)[0];

  await srv.start();
  // What the browser fires when the network returns: the tracker reconnects at once (§7).
  await page.evaluate(() => window.dispatchEvent(new Event("online")));
  await expect.poll(async () => (await state()).state, { timeout: 30_000 }).toBe("open");
  await expect.poll(() => page.evaluate(() => window.__off.map((d) => d.state).filter(Boolean).at(-1))).toBe("stopped");
  const reverted = await page.evaluate(() => window.__off.filter((d) => d.report).map((d) => d.report));
  // Every local patch still live is reverted (one that ended by its ttl already was).
  expect(reverted.filter((r) => r.status === "reverted").map((r) => r.id).sort()).toEqual([...applied].sort());
  // The server stores every queued event and sends its own emphasis, applied by the tracker.
  await expect.poll(async () => (await srv.admin(`/v1/admin/stats?sid=${sid}`)).body.sessions[sid]).toBeGreaterThanOrEqual(pending);
  await expect.poll(() => page.evaluate(() => window.__patches.filter((p) => p.status === "applied").map((p) => p.id))).toContainEqual(
    "hover-emphasis:p1",
  );
  await expect(p1).toHaveClass(/ma-emphasis/);
  await expect.poll(async () => (await state()).acked).toBeGreaterThanOrEqual(lastQueued); // all acked (§4)
  expect(errors).toEqual([]);
  console.log(`offline mode: engine active ${loadMs} ms after the socket closed (threshold 1000 ms, cold cache, loopback)`);
});
