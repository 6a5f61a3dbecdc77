// The demo shop, as served by `microadjust serve --demo`, with Trusted Types enforced on top of its
// own CSP (`script-src 'self'`): the response's Content-Security-Policy header is rewritten by
// page.route to add `require-trusted-types-for 'script'`. The built tracker must connect and
// get a hover patch applied (the patcher chunk is import()ed: no Trusted Types sink), with no page
// error and no CSP violation on the way.
//
// Why an earlier attempt "never connected": a document that page.route() fulfils has no IP address
// space of its own, so Chromium's Local Network Access checks treat it as public and block its
// WebSocket to 127.0.0.1 (console: net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS), with or
// without Trusted Types: the same page fulfilled with unchanged headers stays `closed` too. Not
// the tracker, not the demo page: the interception. This spec's browser runs with those checks
// off (a real visitor's page on the server's own origin is never subject to them); a header
// rewrite that keeps the network response (CDP Fetch.continueResponse) is no way around it, as
// Chromium does not enforce a CSP added there.
//   npx playwright test -c e2e/playwright.config.mjs e2e/tracker-csp.spec.mjs
import { test, expect, recordPatches } from "./fixtures.mjs";
import config from "./playwright.config.mjs";

const TT = "require-trusted-types-for 'script'";
const launch = config.use.launchOptions;
test.use({ launchOptions: { ...launch, args: [...launch.args, "--disable-features=LocalNetworkAccessChecks"] } });

test("demo shop under script-src 'self' + Trusted Types: the tracker connects and a hover patch is applied", async ({ page, server }) => {
  const csp = [];
  await page.route(server.url + "/", async (route) => {
    const response = await route.fetch();
    const headers = response.headers();
    expect(headers["content-security-policy"]).toContain("script-src 'self'"); // the demo's own
    headers["content-security-policy"] += "; " + TT;
    csp.push(headers["content-security-policy"]);
    await route.fulfill({ response, headers });
  });
  const problems = [];
  page.on("pageerror", (e) => problems.push("pageerror: " + e.message));
  page.on("console", (m) => (m.type() === "error" || m.type() === "warning") && problems.push(`console.${m.type()}: ${m.text()}`));
  await page.addInitScript(() => {
    window.__maViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__maViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber} ${e.sample}`));
  });
  await recordPatches(page);

  await page.goto(server.url + "/");
  expect(csp).toEqual([expect.stringContaining(TT)]);
  await expect.poll(() => page.evaluate(() => window.microadjust && window.microadjust.state && window.microadjust.state().state)).toBe("open");

  const product = page.locator('[data-ma-item="p1"]');
  await product.hover();
  await expect(product).toHaveClass(/\bma-emphasis\b/, { timeout: 8000 });
  const reports = await page.evaluate(() => window.__maPatches.map((p) => [p.id, p.status]));
  expect(reports).toContainEqual(["hover-emphasis:p1", "applied"]);
  expect(await page.evaluate(() => window.__maViolations)).toEqual([]);
  expect(problems).toEqual([]);

  // Trusted Types are really enforced on this page: a string into an HTML sink throws (checked last:
  // the probe's own violation is reported).
  expect(await page.evaluate(() => {
    try {
      document.createElement("div").innerHTML = "<b>x</b>";
      return "allowed";
    } catch (e) {
      return e.name;
    }
  })).toBe("TypeError");
  await expect.poll(() => page.evaluate(() => window.__maViolations.length)).toBe(1);
});
