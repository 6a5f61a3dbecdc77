// The guards of the shipped demo rules, seen from the page (issue 4, "Guards against
// over-adjusting"; docs/RULES.md "Guards"): the global frequency cap of 5 adjustments per session,
// and patches that go away by themselves when their ttl passes. (A patch withdrawn because its rule
// stopped holding is the explore prompt in examples-demo.spec.mjs.) Each test runs a private
// server, so the server-wide figures of /v1/admin/stats belong to that test's visitor alone.
import { test, expect, startServer, ROOT, wire, acked } from "./fixtures.mjs";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SHIPPED = JSON.parse(readFileSync(join(ROOT, "server/microadjust/demo/rules.json"), "utf8"));


async function open(page, url) {
  await page.addInitScript(() => {
    window.__maLog = [];
    document.addEventListener("microadjust:patch", (e) => window.__maLog.push({ ...e.detail, at: performance.now() }));
  });
  await page.goto(url);
  await expect.poll(() => page.evaluate(() => window.microadjust && window.microadjust.state().state)).toBe("open");
}
const log = (page) => page.evaluate(() => window.__maLog);

/** The seq of the event the page sent matching `pred`, once it has been sent. */
async function sentEvent(w, pred, timeout = 8000) {
  let seq;
  await expect
    .poll(
      () => {
        for (const m of w.sent)
          if (m.t === "events")
            m.events.forEach((e, i) => {
              if (seq === undefined && pred(e)) seq = m.seq + i;
            });
        return seq;
      },
      { timeout },
    )
    .toBeDefined();
  return seq;
}

test("no more than 5 adjustments per session reach the page, however many rules fire", async ({ page }) => {
  const server = await startServer(); // the shipped rules, untouched
  try {
    expect(SHIPPED.settings.max_adjustments).toBe(5);
    const w = wire(page);
    await open(page, server.url + "/");
    // Six products hovered past the intent threshold: six hover-emphasis candidates (cooldown 0,
    // one target each), on top of what dwell and interest bring (discount, reorder).
    const hovered = ["p1", "p2", "p3", "p4", "p5", "p6"];
    for (const key of hovered) {
      await page.locator(`[data-ma-item="${key}"]`).hover();
      await sentEvent(w, (e) => e.k === "hover" && e.phase === "intent" && e.item === key);
    }
    // Everything the server decided for those events has been sent once a later event is acked
    // (one socket, in order: ack N, then the patches of batch N).
    await page.evaluate(() => window.microadjust.track("probe"));
    const probe = await sentEvent(w, (e) => e.k === "custom" && e.name === "probe");
    await expect.poll(() => acked(w)).toBeGreaterThanOrEqual(probe);

    const patches = w.received.filter((m) => m.t === "patch");
    expect(patches.map((m) => m.patch.id)).toHaveLength(5);
    expect(patches.filter((m) => m.patch.rule === "hover-emphasis").length).toBeGreaterThanOrEqual(2);
    // The page applied exactly those five.
    await expect.poll(async () => (await log(page)).filter((r) => r.status === "applied").length).toBe(5);
    // Later hovers reached the server but no longer the page.
    await expect(page.locator('[data-ma-item="p6"]')).not.toHaveClass(/\bma-emphasis\b/);
    const emphasised = await page.locator('[data-ma-slot="grid"] .ma-emphasis').count();
    expect(emphasised).toBe(patches.filter((m) => m.patch.rule === "hover-emphasis").length);
    // The server agrees: 5 patches sent in this process, every event stored.
    const sid = await page.evaluate(() => window.microadjust.state().sid);
    const { status, body } = await server.admin(`/v1/admin/stats?sid=${sid}`);
    expect(status).toBe(200);
    expect(body.patches).toBe(5);
    expect(body.sessions[sid]).toBe(acked(w));
  } finally {
    await server.cleanup();
  }
});

test("an emphasis is reverted when its ttl passes, and can be earned again", async ({ page }) => {
  // Shipped hover-emphasis ttl: 30 s. Here 3 s.
  const doc = structuredClone(SHIPPED);
  const rule = doc.rules.find((r) => r.id === "hover-emphasis");
  expect(rule.ttl).toBe(30_000);
  rule.ttl = 3000;
  const dir = mkdtempSync(join(tmpdir(), "ma-rules-"));
  writeFileSync(join(dir, "rules.json"), JSON.stringify(doc));
  const server = await startServer(["--rules", join(dir, "rules.json")]);
  try {
    await open(page, server.url + "/");
    const product = page.locator('[data-ma-item="p3"]');
    await product.hover();
    await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
    await page.mouse.move(5, 5);
    await expect(product).not.toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
    const reports = (await log(page)).filter((r) => r.id === "hover-emphasis:p3");
    expect(reports.map((r) => [r.status, r.reason])).toEqual([
      ["applied", undefined],
      ["reverted", "ttl"],
    ]);
    expect(reports[1].at - reports[0].at).toBeGreaterThanOrEqual(3000 - 50);
    // The page is as it was: the original class list.
    await expect(product).toHaveAttribute("class", "product swatch-p3");
    // The engine forgot the expired patch: hovering again emphasises again.
    await product.hover();
    await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
  } finally {
    await server.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
