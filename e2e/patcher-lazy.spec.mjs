// The patcher is not in the default bundle (client_js/src/lazy.js): real Chromium, the built
// tracker on `microadjust serve --demo` (CSP script-src 'self'). The chunk
// /microadjust-patcher.js is fetched once, right after the socket's `welcome`, before any patch;
// a chunk that cannot load fails the patch with `patcher_unavailable` and the next one loads it.
// It also measures event-to-paint of the first patch of a visit against the later ones, the
// figures of docs/TRACKER.md "Size budget":
//   npx playwright test -c e2e/playwright.config.mjs e2e/patcher-lazy.spec.mjs
import { test, expect, recordPatches } from "./fixtures.mjs";

const CHUNK = "/microadjust-patcher.js";

async function open(page, url) {
  const fetched = [];
  page.on("request", (r) => new URL(r.url()).pathname == CHUNK && fetched.push(r.url()));
  await recordPatches(page);
  await page.goto(url);
  await expect.poll(() => page.evaluate(() => window.microadjust && window.microadjust.state().state)).toBe("open");
  return fetched;
}

async function emphasise(page, key) {
  const product = page.locator(`[data-ma-item="${key}"]`);
  await product.scrollIntoViewIfNeeded();
  await product.hover();
  await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
  await page.mouse.move(0, 0);
}

const hoverReports = (page) => page.evaluate(() => window.__maPatches.filter((p) => p.id.startsWith("hover-emphasis")));

// The demo allows 5 adjustments a session (rules.json max_adjustments): three hovers a visit,
// over three fresh visitors (new context: empty cache, so the first patch fetches the chunk).
test("the chunk is fetched once, after the welcome and before any patch; first vs later event-to-paint", async ({ browser, server }) => {
  const first = [];
  const later = [];
  for (let visit = 0; visit < 3; visit++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const fetched = await open(page, server.url + "/");
    await page.waitForTimeout(1000);
    expect(await page.evaluate(() => window.__maPatches.length)).toBe(0); // no patch yet ...
    expect(fetched).toHaveLength(1); // ... but the chunk is there already
    for (const key of ["p1", "p3", "p6"]) await emphasise(page, key);
    expect(fetched).toHaveLength(1); // and never fetched again
    const ms = (await hoverReports(page)).map((p) => [p.status, p.ms]);
    expect(ms.map((m) => m[0])).toEqual(["applied", "applied", "applied"]);
    first.push(ms[0][1]);
    later.push(...ms.slice(1).map((m) => m[1]));
    await context.close();
  }
  const note = `hover-emphasis event-to-paint ms: first patch of a visit ${first.join(", ")}; later patches ${later.join(", ")}`;
  console.log(note);
  test.info().annotations.push({ type: "event-to-paint ms", description: note });
});

test("a chunk that cannot load fails the patch with patcher_unavailable; the next patch loads it", async ({ page, server }) => {
  await page.route("**" + CHUNK, (route) => route.abort());
  const fetched = await open(page, server.url + "/");
  await page.locator('[data-ma-item="p1"]').hover();
  await expect.poll(() => hoverReports(page), { timeout: 8000 }).toEqual([expect.objectContaining({ status: "failed", reason: "patcher_unavailable" })]);
  await expect(page.locator('[data-ma-item="p1"]')).not.toHaveClass(/\bma-emphasis\b/);
  await page.mouse.move(0, 0);
  await page.unroute("**" + CHUNK);
  await emphasise(page, "p2");
  const last = (await hoverReports(page)).at(-1);
  expect([last.id, last.status]).toEqual(["hover-emphasis:p2", "applied"]);
  expect(fetched.length).toBeGreaterThanOrEqual(2);
});
