// Consent first (issue 3, PROTOCOL §8, docs/TRACKER.md "Consent and privacy"), proved on the
// server's side: a page on its own origin (a tiny static server here, allowed with
// `--site demo=ORIGIN`) loads the default bundle against a private `microadjust serve`. With
// `data-consent="required"` the server sees no connection and no session, and the page opens no
// WebSocket and sends no beacon, until `microadjust.consent.grant()`; `revoke()` closes the
// socket, clears the ids and the queue, and the opt-out survives reloads. Global Privacy Control
// and Do Not Track are honoured by default; `data-respect-gpc="false"` is the documented opt-out.
import { test, expect, startServer, ROOT } from "./fixtures.mjs";
import http from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const BUNDLE = join(ROOT, "client_js", "dist", "microadjust.min.js");
// `/?consent=required&gpc=false` -> the matching script tag attributes.
const html = (q, endpoint) => `<!doctype html><title>Consent</title>
<style>.product{display:block;height:300px;margin:8px;background:#eee}.long{height:2000px}</style>
<section data-ma-slot="grid"><article class="product" data-ma-item="p1" data-ma-tags="shoes">P1</article>
<button id="b">Buy</button></section><div class="long"></div>
<script src="/microadjust.js" data-site="demo" data-endpoint="${endpoint}" data-flush-ms="100"${
  q.get("consent") ? ` data-consent="${q.get("consent")}"` : ""
}${q.get("gpc") ? ` data-respect-gpc="${q.get("gpc")}"` : ""} async></script>`;

let site, srv;
test.beforeAll(async () => {
  const js = readFileSync(BUNDLE);
  site = http.createServer((q, r) => {
    const u = new URL(q.url, "http://x");
    if (u.pathname === "/microadjust.js") return r.writeHead(200, { "content-type": "text/javascript" }).end(js);
    r.writeHead(200, { "content-type": "text/html" }).end(html(u.searchParams, site.endpoint));
  });
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  site.origin = `http://127.0.0.1:${site.address().port}`;
  srv = await startServer(["--site", `demo=${site.origin}`]);
  site.endpoint = srv.url.replace("http", "ws") + "/v1/stream";
});
test.afterAll(async () => {
  await srv?.cleanup();
  site?.close();
});

const stats = async () => (await srv.admin("/v1/admin/stats")).body;
/** The server's event log, all sessions. */
const log = () => {
  const f = join(srv.dataDir, "events.jsonl");
  return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
};
/** Every WebSocket the page opens and every beacon it sends (the browser's view). */
function wire(page) {
  const w = { sockets: [], beacons: [] };
  page.on("websocket", (ws) => w.sockets.push(ws));
  page.on("request", (r) => r.url().includes("/v1/events") && w.beacons.push(r.postData()));
  return w;
}
const storage = (page) =>
  page.evaluate(() => {
    const pick = (s) => Object.fromEntries(Object.keys(s).filter((k) => k.startsWith("ma_")).map((k) => [k, s.getItem(k)]));
    return { local: pick(localStorage), session: pick(sessionStorage) };
  });
/** What a visitor does that the tracker would otherwise record (click, hover, scroll, a goal). */
async function activity(page) {
  await page.hover("[data-ma-item=p1]");
  await page.click("#b");
  await page.mouse.wheel(0, 600);
  await page.evaluate(() => microadjust.track("add_to_cart", { item: "p1" }));
  await page.evaluate(() => microadjust.flush());
  await page.goto("about:blank"); // pagehide and visibilitychange: the beacon path too
}
// A negative can only be observed over time: long enough for a 100 ms flush, an urgent event,
// a reconnect attempt (<= 0.5 s) and the pagehide beacon to have reached the server.
const QUIET_MS = 1500;

test("required: nothing before grant(); events after it; revoke() closes, clears and persists the opt-out", async ({ page }) => {
  const before = await stats();
  const w = wire(page);
  await page.goto(site.origin + "/?consent=required");
  await page.waitForFunction(() => window.microadjust && microadjust.state);
  expect(await page.evaluate(() => microadjust.consent.status())).toBe("pending");
  await activity(page);
  await page.goto(site.origin + "/?consent=required");
  await page.waitForFunction(() => window.microadjust && microadjust.state);
  await page.waitForTimeout(QUIET_MS);
  expect(await page.evaluate(() => microadjust.state())).toMatchObject({ consent: "pending", seq: 0, pending: 0, vid: null, sid: null });
  expect(await storage(page)).toEqual({ local: {}, session: {} }); // no ids written before consent
  expect(w.sockets).toHaveLength(0);
  expect(w.beacons).toHaveLength(0);
  let now = await stats();
  expect(now.connections_total).toBe(before.connections_total);
  expect(now.beacons).toBe(before.beacons);
  expect(Object.keys(now.sessions)).toEqual(Object.keys(before.sessions));
  expect(now.events).toBe(before.events);

  // grant(): a socket, a session, and events that reach the server's log.
  await page.evaluate(() => microadjust.consent.grant());
  await page.waitForFunction(() => microadjust.state().state === "open");
  expect(w.sockets).toHaveLength(1);
  await page.click("#b");
  await page.evaluate(() => microadjust.track("signup"));
  await page.waitForFunction(() => microadjust.state().seq >= 3); // view, goal, and the click (held <= 1 s: dead?)
  const { sid, vid, seq } = await page.evaluate(() => microadjust.state());
  expect(sid).toMatch(/^s_[A-Za-z0-9_-]{22}$/);
  expect(vid).toMatch(/^v_[A-Za-z0-9_-]{22}$/);
  await expect.poll(async () => (await stats()).sessions[sid]).toBe(seq);
  const kinds = log().filter((e) => e.sid === sid).map((e) => e.k);
  expect(kinds).toEqual(expect.arrayContaining(["view", "click", "custom"]));
  // The pre-grant activity was never recorded: the only goal is the one made after grant().
  expect(log().filter((e) => e.k === "custom").map((e) => e.name)).toEqual(["signup"]);
  expect(await storage(page)).toMatchObject({ local: { ma_consent: '"granted"', ma_vid: JSON.stringify(vid) }, session: { ma_sid: JSON.stringify(sid) } });
  expect((await stats()).connections).toBe(before.connections + 1);

  // revoke(): the socket closes (both ends), ids and queue are gone, nothing more is sent.
  const closed = new Promise((r) => w.sockets[0].on("close", r));
  await page.evaluate(() => microadjust.consent.revoke());
  await closed;
  await expect.poll(async () => (await stats()).connections).toBe(before.connections);
  expect(await page.evaluate(() => microadjust.state())).toMatchObject({ consent: "denied", state: "closed", seq: 0, pending: 0, vid: null, sid: null });
  expect(await storage(page)).toEqual({ local: { ma_consent: '"denied"' }, session: {} });
  const stored = (await stats()).events;
  expect(await page.evaluate(() => microadjust.track("after_revoke"))).toBe(false);

  // The opt-out persists: a reload, and even a page that does not ask for consent at all.
  for (const path of ["/?consent=required", "/"]) {
    await page.goto(site.origin + path);
    await page.waitForFunction(() => window.microadjust && microadjust.state);
    expect(await page.evaluate(() => microadjust.consent.status())).toBe("denied");
  }
  await activity(page);
  await page.waitForTimeout(QUIET_MS);
  expect(w.sockets).toHaveLength(1);
  expect(w.beacons).toHaveLength(0);
  now = await stats();
  expect(now.connections_total).toBe(before.connections_total + 1);
  expect(now.events).toBe(stored);
  expect(log().some((e) => e.name === "after_revoke" || (e.sid !== sid && e.vid === vid))).toBe(false);
});

for (const [signal, init] of [
  ["GPC", () => Object.defineProperty(Navigator.prototype, "globalPrivacyControl", { get: () => true, configurable: true })],
  ["DNT", () => Object.defineProperty(Navigator.prototype, "doNotTrack", { get: () => "1", configurable: true })],
]) {
  test(`${signal} is honoured by default (grant() refused); data-respect-gpc="false" tracks`, async ({ page }) => {
    await page.addInitScript(init);
    const warnings = [];
    page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
    const before = await stats();
    const w = wire(page);
    await page.goto(site.origin + "/");
    await page.waitForFunction(() => window.microadjust && microadjust.state);
    expect(await page.evaluate(() => microadjust.consent.status())).toBe("denied");
    await page.evaluate(() => microadjust.consent.grant());
    expect(warnings.join("\n")).toContain("grant() ignored");
    expect(await page.evaluate(() => microadjust.consent.status())).toBe("denied");
    await activity(page);
    await page.goto(site.origin + "/");
    await page.waitForFunction(() => window.microadjust && microadjust.state);
    await page.waitForTimeout(QUIET_MS);
    expect(await storage(page)).toEqual({ local: {}, session: {} });
    expect(w.sockets).toHaveLength(0);
    expect(w.beacons).toHaveLength(0);
    const now = await stats();
    expect(now.connections_total).toBe(before.connections_total);
    expect(now.events).toBe(before.events);
    expect(now.beacons).toBe(before.beacons);

    // A site with another legal basis: the documented opt-out of the signal.
    await page.goto(site.origin + "/?gpc=false");
    await page.waitForFunction(() => microadjust.state().state === "open");
    await page.click("#b");
    await page.waitForFunction(() => microadjust.state().seq >= 2); // view + click (held <= 1 s)
    const { sid, seq } = await page.evaluate(() => microadjust.state());
    await expect.poll(async () => (await stats()).sessions[sid]).toBe(seq);
    expect(log().filter((e) => e.sid === sid).map((e) => e.k)).toEqual(["view", "click"]);
  });
}
