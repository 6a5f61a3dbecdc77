// The rules HTTP API as a product person uses it (docs/SERVER.md "Admin API", docs/RULES.md):
// the token, a broken rule set rejected whole with exact paths while the last good set keeps
// serving pages, a new rule live on an already open page without restart, edits of the rules file
// on disk, and the event-to-paint histogram of /v1/admin/stats filled by the page's reports.
// Every test runs its own server: rule changes and server-wide figures stay with that test.
import { test, expect, startServer, wire, acked } from "./fixtures.mjs";
import { readFileSync, writeFileSync, mkdtempSync, rmSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let server;
test.beforeEach(async () => {
  server = await startServer();
});
test.afterEach(async () => {
  if (server) await server.cleanup();
  server = undefined;
});


async function open(page, path = "/") {
  await page.addInitScript(() => {
    window.__maLog = [];
    document.addEventListener("microadjust:patch", (e) => window.__maLog.push(e.detail));
  });
  const w = wire(page);
  await page.goto(server.url + path);
  await expect.poll(() => page.evaluate(() => window.microadjust && window.microadjust.state().state)).toBe("open");
  return w;
}

/**
 * Waits until the server has answered everything the page sent so far: a custom event is sent
 * and acked, and on one ordered socket its ack follows the patches of every earlier batch.
 */
async function settled(page, w) {
  await page.evaluate(() => window.microadjust.track("probe"));
  await expect.poll(() => w.sent.some((m) => m.t === "events" && m.events.some((e) => e.name === "probe"))).toBe(true);
  const m = w.sent.find((m) => m.t === "events" && m.events.some((e) => e.name === "probe"));
  const seq = m.seq + m.events.findIndex((e) => e.name === "probe");
  await expect.poll(() => acked(w)).toBeGreaterThanOrEqual(seq);
}

async function hoverEmphasis(page, key) {
  const product = page.locator(`[data-ma-item="${key}"]`);
  await product.hover();
  await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
  await page.mouse.move(5, 5);
}

const call = async (path, init = {}) => {
  const r = await fetch(server.url + path, init);
  return { status: r.status, headers: r.headers, type: r.headers.get("content-type") || "", body: await r.json() };
};

test("without the admin token the API answers 401, with a wrong one 403, and changes nothing", async () => {
  const before = await server.admin("/v1/admin/rules");
  expect(before.status).toBe(200);
  const newRule = JSON.stringify({ id: "sneaky", when: { "==": [1, 1] }, target: { slot: "cta" }, ops: [{ op: "hide" }] });
  const requests = [
    ["GET", "/v1/admin/rules"],
    ["PUT", "/v1/admin/rules", JSON.stringify({ version: 1, rules: [] })],
    ["POST", "/v1/admin/rules", newRule],
    ["GET", "/v1/admin/rules/hover-emphasis"],
    ["PUT", "/v1/admin/rules/hover-emphasis", newRule],
    ["DELETE", "/v1/admin/rules/hover-emphasis"],
    ["POST", "/v1/admin/rules/validate", JSON.stringify({ version: 1, rules: [] })],
    ["GET", "/v1/admin/stats"],
  ];
  for (const [method, path, body] of requests) {
    const what = `${method} ${path}`;
    const json = { "content-type": "application/json" };
    const none = await call(path, { method, body, headers: json });
    expect(none.status, what).toBe(401);
    expect(none.headers.get("www-authenticate"), what).toBe("Bearer");
    expect(none.type, what).toContain("application/json");
    expect(none.body.error, what).toBe("unauthorized");
    const basic = await call(path, { method, body, headers: { ...json, authorization: `Basic ${btoa("admin:" + server.token)}` } });
    expect(basic.status, what).toBe(401);
    const wrong = await call(path, { method, body, headers: { ...json, authorization: `Bearer ${server.token}x` } });
    expect(wrong.status, what).toBe(403);
    expect(wrong.type, what).toContain("application/json");
    expect(wrong.body, what).toEqual({ error: "forbidden", detail: expect.any(String) });
  }
  const after = await server.admin("/v1/admin/rules");
  expect(after.body.revision).toBe(before.body.revision);
  expect(after.body.doc).toEqual(before.body.doc);
});

test("a broken rule set is rejected whole with the exact paths, and the last good set keeps serving the page", async ({ page }) => {
  const good = (await server.admin("/v1/admin/rules")).body;
  const broken = structuredClone(good.doc);
  expect(broken.rules[3].id).toBe("explore-prompt");
  broken.rules[3].when.and[1] = { ">": [{ var: "session.scrol.speed" }, 3] }; // the example
  broken.rules[0].ops[0] = { op: "innerHTML", html: "<b>hi</b>" };
  broken.rules.push({ id: "hover-emphasis", when: { "==": [1, 1] }, target: { slot: "cta" }, ops: [{ op: "show" }] });
  broken.rules[1].when = { ">=": [{ var: "profile.top.tag_score" }, 1] }; // a good edit in the same set

  const rejected = await server.admin("/v1/admin/rules", { method: "PUT", body: JSON.stringify(broken) });
  expect(rejected.status).toBe(422);
  expect(rejected.body.error).toBe("invalid_rules");
  const byPath = Object.fromEntries(rejected.body.errors.map((e) => [e.path, e]));
  expect(Object.keys(byPath).sort()).toEqual(["rules[0].ops[0].op", "rules[3].when.and[1]", "rules[8].id"]);
  expect(byPath["rules[3].when.and[1]"].msg).toBe("unknown feature session.scrol.speed");
  expect(byPath["rules[3].when.and[1]"].hint).toContain("session.scroll.speed");
  expect(byPath["rules[0].ops[0].op"].msg).toContain("innerHTML");
  expect(byPath["rules[8].id"].msg).toContain("duplicate rule id 'hover-emphasis'");
  // The same answer from the dry run.
  const dry = await server.admin("/v1/admin/rules/validate", { method: "POST", body: JSON.stringify(broken) });
  expect(dry.status).toBe(422);
  expect(dry.body.errors).toEqual(rejected.body.errors);

  // One bad rule added on its own is rejected too, with its path in the whole set.
  const one = await server.admin("/v1/admin/rules", {
    method: "POST",
    body: JSON.stringify({ id: "bad-attr", when: { "==": [1, 1] }, target: { slot: "cta" }, ops: [{ op: "setAttr", name: "onclick", value: "x" }] }),
  });
  expect(one.status).toBe(422);
  expect(one.body.errors.map((e) => e.path)).toEqual([`rules[${good.doc.rules.length}].ops[0].name`]);

  // Nothing of it went live: same revision, same document, and the page gets the old patches.
  const now = (await server.admin("/v1/admin/rules")).body;
  expect(now.revision).toBe(good.revision);
  expect(now.doc).toEqual(good.doc);
  expect(now.reload_error).toBeNull();
  await open(page);
  await hoverEmphasis(page, "p2"); // rules[0] still adds its class, not the refused innerHTML
});

test("a new rule takes effect on an already open page without restart; update and delete too", async ({ page }) => {
  const w = await open(page);
  const pid = server.proc.pid;
  const cta = page.locator('[data-ma-slot="cta"]');
  const clickP2 = () => page.locator('[data-ma-item="p2"] h3').click();

  // Before: clicking p2 does nothing to the call-to-action.
  await clickP2();
  await settled(page, w);
  await expect(cta).not.toHaveClass(/\bma-pulse\b/);

  // docs/SERVER.md's example rule, added while the page is open.
  const rule = {
    id: "cta-pulse",
    on: ["click"],
    when: { "==": [{ var: "event.item" }, "p2"] },
    target: { slot: "cta" },
    ops: [{ op: "addClass", class: "ma-pulse" }],
    ttl: 5000,
  };
  const before = (await server.admin("/v1/admin/rules")).body.revision;
  const created = await server.admin("/v1/admin/rules", { method: "POST", body: JSON.stringify(rule) });
  expect(created.status).toBe(201);
  expect(created.body.rule).toBe("cta-pulse");
  expect(created.body.revision).toBeGreaterThan(before);
  expect((await server.admin("/v1/admin/rules/cta-pulse")).body).toMatchObject(rule);
  expect((await server.admin("/v1/admin/rules", { method: "POST", body: JSON.stringify(rule) })).status).toBe(409);
  await clickP2();
  await expect(cta).toHaveClass(/\bma-pulse\b/, { timeout: 5000 });

  // Update: new text for the call-to-action, no cooldown, until the page unloads.
  const updated = { ...rule, cooldown: 0, ttl: 0, ops: [{ op: "setText", text: "Back in stock: the City Court Sneaker" }] };
  const put = await server.admin("/v1/admin/rules/cta-pulse", { method: "PUT", body: JSON.stringify(updated) });
  expect(put.status).toBe(200);
  await clickP2();
  await expect(cta).toHaveText("Back in stock: the City Court Sneaker", { timeout: 5000 });

  // Delete: the showing patch is withdrawn on the visitor's next batch.
  const del = await server.admin("/v1/admin/rules/cta-pulse", { method: "DELETE" });
  expect(del.status).toBe(200);
  expect((await server.admin("/v1/admin/rules/cta-pulse")).status).toBe(404);
  await settled(page, w);
  await expect(cta).toHaveText("Shop the collection", { timeout: 5000 });
  expect(w.received.filter((m) => m.t === "revert").map((m) => m.id)).toContain("cta-pulse:cta");

  // All of it on the same server process and the same socket, and written back to the file.
  expect(server.proc.pid).toBe(pid);
  expect(w.received.filter((m) => m.t === "welcome")).toHaveLength(1);
  const file = (await server.admin("/v1/admin/rules")).body.file;
  const onDisk = JSON.parse(readFileSync(file, "utf8"));
  expect(onDisk.rules.map((r) => r.id)).not.toContain("cta-pulse");
  expect(onDisk.rules.map((r) => r.id)).toContain("hover-emphasis");
});

test("edits of the rules file on disk apply within seconds; a broken edit is shown and the last good set stays", async ({ page }) => {
  const w = await open(page);
  const { file, revision } = (await server.admin("/v1/admin/rules")).body;
  const doc = JSON.parse(readFileSync(file, "utf8"));
  const write = (text) => {
    // Atomically, as an editor or a deploy would: never a half-written file.
    writeFileSync(file + ".tmp", text);
    renameSync(file + ".tmp", file);
  };
  write(JSON.stringify(doc).slice(0, -5)); // truncated JSON
  await expect.poll(async () => (await server.admin("/v1/admin/rules")).body.reload_error, { timeout: 5000 }).toBeTruthy();
  expect((await server.admin("/v1/admin/rules")).body.revision).toBe(revision);
  await hoverEmphasis(page, "p1"); // still served by the last good set

  doc.rules.push({ id: "cta-glow", on: ["click"], when: { "==": [{ var: "event.item" }, "p3"] }, target: { slot: "cta" }, ops: [{ op: "addClass", class: "ma-glow" }] });
  write(JSON.stringify(doc, null, 2));
  await expect.poll(async () => (await server.admin("/v1/admin/rules")).body.revision, { timeout: 5000 }).toBeGreaterThan(revision);
  expect((await server.admin("/v1/admin/rules")).body.reload_error).toBeNull();
  await page.locator('[data-ma-item="p3"] h3').click();
  await expect(page.locator('[data-ma-slot="cta"]')).toHaveClass(/\bma-glow\b/, { timeout: 5000 });
  expect(w.received.filter((m) => m.t === "welcome")).toHaveLength(1);
});

test("the stats endpoint's event-to-paint histogram is filled from the page's applied reports", async ({ page }) => {
  const empty = (await server.admin("/v1/admin/stats")).body.latency;
  expect(empty.count).toBe(0);
  const w = await open(page);
  await hoverEmphasis(page, "p3");
  await page.locator('[data-ma-item="p4"] h3').click();
  await page.locator('[data-ma-item="p5"] h3').click();
  await expect(page.locator(".ma-premium")).toHaveCount(3, { timeout: 8000 });
  await settled(page, w);

  const timed = (await page.evaluate(() => window.__maLog)).filter((r) => r.status === "applied" || r.status === "delegated");
  expect(timed.length).toBeGreaterThanOrEqual(2);
  const sentMs = w.sent.filter((m) => m.t === "applied" && ["applied", "delegated"].includes(m.status)).map((m) => m.ms);
  expect(sentMs.sort((a, b) => a - b)).toEqual(timed.map((r) => r.ms).sort((a, b) => a - b));

  let stats;
  await expect
    .poll(async () => (stats = (await server.admin("/v1/admin/stats")).body).latency.count)
    .toBe(sentMs.length);
  const { latency } = stats;
  expect(stats.reports.applied).toBe(w.sent.filter((m) => m.t === "applied" && m.status === "applied").length);
  expect(latency.max_ms).toBeCloseTo(Math.max(...sentMs), 1);
  expect(latency.mean_ms).toBeCloseTo(sentMs.reduce((a, b) => a + b, 0) / sentMs.length, 1);
  expect(latency.p50_ms).toBeGreaterThanOrEqual(Math.min(...sentMs) - 0.01);
  expect(latency.p95_ms).toBeLessThanOrEqual(latency.max_ms);
  // Cumulative buckets (Prometheus style): each holds exactly the reports at or under its bound.
  expect(latency.buckets.at(-1)).toEqual({ le: "+Inf", count: sentMs.length });
  for (const b of latency.buckets.slice(0, -1)) expect(b.count, `le ${b.le}`).toBe(sentMs.filter((ms) => ms <= b.le).length);
  test.info().annotations.push({ type: "event-to-paint ms", description: JSON.stringify(latency) });
});
