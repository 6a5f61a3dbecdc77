// The product's examples (issue 4) as the demo ships them: one test per example rule of
// server/microadjust/demo/rules.json, in real Chromium against a real `microadjust serve --demo`.
// Rules whose thresholds are long timers (20 s on the page, 15 s idle, a 30 s ttl) run on a private
// server whose rules file is the shipped one with only that timer shortened, so the test still
// exercises the shipped rule's shape (docs/RULES.md "The shipped examples").
import { test, expect, startServer, ROOT } from "./fixtures.mjs";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SHIPPED = JSON.parse(readFileSync(join(ROOT, "server/microadjust/demo/rules.json"), "utf8"));

/**
 * A private demo server running the shipped rules with `edit(rule)` applied to rule `id`.
 * Returns the server; `server.cleanup()` also removes the rules file.
 */
async function serverWithRule(id, edit) {
  const doc = structuredClone(SHIPPED);
  const rule = doc.rules.find((r) => r.id === id);
  expect(rule, `shipped rule ${id}`).toBeTruthy();
  edit(rule);
  const dir = mkdtempSync(join(tmpdir(), "ma-rules-"));
  const path = join(dir, "rules.json");
  writeFileSync(path, JSON.stringify(doc, null, 2));
  const server = await startServer(["--rules", path]);
  const cleanup = server.cleanup;
  server.cleanup = async () => {
    await cleanup();
    rmSync(dir, { recursive: true, force: true });
  };
  return server;
}

/** Replaces the number compared with `{"var": feature}` in a rule's `when` (fails if absent). */
function setThreshold(rule, feature, value) {
  let found = 0;
  const walk = (node) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    for (const [op, args] of Object.entries(node)) {
      if ([">=", ">", "<", "<="].includes(op) && Array.isArray(args) && args[0] && args[0].var === feature && typeof args[1] === "number") {
        args[1] = value;
        found++;
      } else walk(args);
    }
  };
  walk(rule.when);
  expect(found, `${rule.id}: a threshold on ${feature}`).toBe(1);
}

/** The page's patch reports (microadjust:patch), each stamped with performance.now(). */
async function record(page) {
  await page.addInitScript(() => {
    window.__maLog = [];
    document.addEventListener("microadjust:patch", (e) => window.__maLog.push({ ...e.detail, at: performance.now() }));
  });
}
const reports = (page, prefix, status) =>
  page.evaluate(([p, s]) => window.__maLog.filter((r) => r.id.startsWith(p) && (!s || r.status === s)), [prefix, status]);

/**
 * Keeps the socket traffic of the page; a failing test gets it attached, so a timing problem can
 * be told apart from a rule problem.
 */
test.beforeEach(async ({ page }, testInfo) => {
  const log = [];
  const t0 = Date.now();
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => log.push(`${Date.now() - t0} > ${f.payload}`));
    ws.on("framereceived", (f) => log.push(`${Date.now() - t0} < ${f.payload}`));
  });
  testInfo.wire = log;
});
test.afterEach(async ({}, testInfo) => {
  if (testInfo.status === testInfo.expectedStatus) return;
  const path = testInfo.outputPath("wire.txt");
  writeFileSync(path, testInfo.wire.join("\n"));
  await testInfo.attach("wire", { path, contentType: "text/plain" });
});

async function open(page, url) {
  await record(page);
  await page.goto(url);
  await expect.poll(() => page.evaluate(() => window.microadjust && window.microadjust.state().state)).toBe("open");
}

test("hovering a product longer than the intent threshold emphasises that product only", async ({ page, server }) => {
  await open(page, server.url + "/");
  const product = page.locator('[data-ma-item="p3"]');
  const t0 = await page.evaluate(() => performance.now());
  await product.hover();
  await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
  await expect(page.locator(".ma-emphasis")).toHaveCount(1);
  const [applied] = await reports(page, "hover-emphasis:p3", "applied");
  // Not before the pointer has rested for the 2 s threshold the rule (and the tracker) use.
  expect(applied.at - t0).toBeGreaterThanOrEqual(2000);
});

test("a visitor who stays in the top half of the shop gets the explore prompt, withdrawn once they scroll past the middle", async ({ page }) => {
  // Shipped: 20 s on the page. Here 3 s; everything else (depth < 50, revert, hysteresis,
  // min_display 5 s) as shipped.
  const server = await serverWithRule("explore-prompt", (r) => setThreshold(r, "session.page.duration", 3000));
  try {
    await open(page, server.url + "/");
    const prompt = page.locator('[data-ma-slot="explore"]');
    await expect(prompt).toBeHidden();
    await expect(prompt).toBeVisible({ timeout: 10_000 });
    await expect(prompt).toContainText("explore the collection");
    const [shown] = await reports(page, "explore-prompt:", "applied");
    expect(shown.at).toBeGreaterThanOrEqual(3000); // not before the time on the page
    // Past the middle (depth 100 %): the condition is clearly gone; reverted after min_display.
    await page.mouse.move(600, 400);
    await page.mouse.wheel(0, 2000);
    await expect(prompt).toBeHidden({ timeout: 15_000 });
    const [reverted] = await reports(page, "explore-prompt:", "reverted");
    expect(reverted.at - shown.at).toBeGreaterThanOrEqual(5000 - 50); // minimum display time
  } finally {
    await server.cleanup();
  }
});

test("dwelling on products for 5 s shows the discount banner", async ({ page, server }) => {
  await open(page, server.url + "/");
  await page.mouse.move(0, 0);
  const banner = page.locator('[data-ma-slot="discount"]');
  await expect(banner).toBeHidden();
  await expect(banner).toBeVisible({ timeout: 12_000 });
  await expect(banner).toHaveText("Still deciding? Take 10% off today with code MICRO10.");
  await expect(page.getByRole("status").filter({ hasText: "MICRO10" })).toBeVisible();
  const [applied] = await reports(page, "dwell-discount:", "applied");
  // The products were visible from the first paint: the banner needs their 5 s of dwell.
  expect(applied.at).toBeGreaterThanOrEqual(5000);
});

test("recent views of luxury watches emphasise the premium products", async ({ page, server }) => {
  await open(page, server.url + "/");
  const premium = page.locator('[data-ma-slot="grid"] .ma-premium');
  await expect(premium).toHaveCount(0);
  // Two luxury watches viewed (a click makes an item "viewed", docs/FEATURES.md).
  await page.locator('[data-ma-item="p4"] h3').click();
  await page.locator('[data-ma-item="p5"] h3').click();
  await expect(premium).toHaveCount(3, { timeout: 8000 });
  // Exactly the grid's luxury items: the two watches and the leather weekender.
  expect(await premium.evaluateAll((els) => els.map((e) => e.dataset.maItem).sort())).toEqual(["p4", "p5", "p6"]);
  await expect(page.locator('[data-ma-slot="recs"] .ma-premium')).toHaveCount(0);
});

test("add to cart then idle brings the slide-in offer, an accessible live status the visitor can dismiss", async ({ page }) => {
  // Shipped: 15 s idle. Here 3 s.
  const server = await serverWithRule("cart-idle-offer", (r) => setThreshold(r, "session.idle.ms", 3000));
  try {
    await open(page, server.url + "/");
    const offer = page.locator(".ma-slidein");
    await page.locator('[data-ma-item="p2"] button.add').click();
    await page.mouse.move(5, 5); // off the products: an idle visitor, not a hovering one
    const clicked = await page.evaluate(() => performance.now());
    await expect(page.locator("#cart-count")).toHaveText("1");
    await expect(offer).toBeVisible({ timeout: 15_000 });
    await expect(offer).toContainText("Still thinking it over?");
    await expect(offer).toContainText("free shipping");
    // Announced politely: the component lives in a role=status / aria-live=polite region.
    // (getByRole only finds elements exposed to assistive technology; the region itself is a
    // zero-size fixed container, so it is checked for presence, the offer for visibility.)
    const region = page.getByRole("status").filter({ has: offer });
    await expect(region).toHaveCount(1);
    await expect(region).toHaveAttribute("aria-live", "polite");
    const [applied] = await reports(page, "cart-idle-offer:", "applied");
    expect(applied.at - clicked).toBeGreaterThanOrEqual(3000 - 500); // idle counted from the add
    // Dismissing it removes it and is reported.
    await offer.getByRole("button", { name: "Dismiss" }).click();
    await expect(offer).toHaveCount(0);
    await expect.poll(() => reports(page, "cart-idle-offer:", "reverted")).toEqual([
      expect.objectContaining({ reason: "dismissed" }),
    ]);
  } finally {
    await server.cleanup();
  }
});

test("a skimming reader gets shorter previews (and not the expanded details)", async ({ page, server }) => {
  await open(page, server.url + "/article");
  const preview = page.locator('[data-ma-slot="preview"]');
  await expect(preview).not.toHaveClass(/\bma-short\b/);
  await page.mouse.move(400, 300);
  // Not in the first 600 ms of the page: the tracker's first gesture speed is measured against
  // the page's start then (client_js/src/signals/scroll.js lastT = 0; see the report).
  await page.waitForFunction(() => performance.now() > 1000);
  for (let i = 0; i < 12; i++) {
    await page.mouse.wheel(0, 600);
    await page.waitForTimeout(40); // fast flicks: well above the 1500 px/s skim speed
  }
  await expect(preview).toHaveClass(/\bma-short\b/, { timeout: 8000 });
  const clamped = await preview.locator("p").evaluate((p) => getComputedStyle(p).webkitLineClamp);
  expect(clamped).toBe("2");
  await expect(page.locator('[data-ma-slot="details"]')).toBeHidden();
  expect(await reports(page, "deep-reader-details:")).toEqual([]);
});

test("a deep reader gets the expanded details", async ({ page, server }) => {
  await open(page, server.url + "/article");
  const details = page.locator('[data-ma-slot="details"]');
  await expect(details).toBeHidden();
  // A reader: scrolls at about 150 px/s (reading pace is <= 1200 px/s), so every section stays
  // in view for 3-5 s (dwell median >= 3 s), down to 60 % of the article. Each section stays under
  // the tracker's 5 s split (see the report: a split span counts as a 5 s and a short dwell).
  await page.mouse.move(400, 300);
  const depth = () => page.evaluate(() => (scrollY + innerHeight) / document.documentElement.scrollHeight);
  await page.waitForTimeout(1000); // reads the opening first
  while ((await depth()) < 0.62) {
    await page.mouse.wheel(0, 30);
    await page.waitForTimeout(200); // the reader's pace
  }
  await expect(details).toBeVisible({ timeout: 10_000 });
  await expect(details).toContainText("Interest decays with a half-life");
  await expect(page.locator('[data-ma-slot="preview"]')).not.toHaveClass(/\bma-short\b/);
});
