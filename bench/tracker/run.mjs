// What the tracker costs the page's main thread (issue 3, "Budget and proof": goal <= 2% added).
// A scripted scroll/hover storm on the demo shop (`microadjust serve --demo`, a private server on
// a free port) in real Chromium, with the tracker and without it (the same page, its
// <script src="/microadjust.js"> removed by page.route), alternating, RUNS times each. Chrome's
// DevTools Protocol `Performance.getMetrics` gives ScriptDuration and TaskDuration for the storm
// (deltas around it, in a fresh page each run); the storm's wall-clock duration is the main
// thread's time budget for the interaction. Prints the medians and the median added script time in
// ms, as % of the baseline's task time (the page's own busy time) and as % of the storm's
// wall-clock duration (docs/TRACKER.md "Cost and sampling" says which one the 2% goal is judged by).
//
//   node bench/tracker/run.mjs [--runs=5] [--page=/shop] [--rules=FILE] [--json]
// --rules runs the server with another rule set, e.g. bench/tracker/no-rules.json to measure the
// tracker alone, without the patches the demo rules send back (and the patcher chunk they load).
import { chromium } from "@playwright/test";
import { startServer } from "../../e2e/fixtures.mjs";

const arg = (name, def) => (process.argv.find((a) => a.startsWith(`--${name}=`)) || `=${def}`).split("=")[1];
const RUNS = +arg("runs", 5);
const PATH = arg("page", "/shop");
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The storm: wheel scrolling down and up with the pointer crossing and resting on products. */
async function storm(page) {
  const { width, height } = page.viewportSize();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 20; i++) {
      await page.mouse.wheel(0, round % 2 ? -120 : 120);
      // The pointer sweeps across the grid (hover enter/leave on every product it crosses).
      await page.mouse.move(((i * 97) % (width - 40)) + 20, ((i * 53) % (height - 40)) + 20, { steps: 4 });
      await page.waitForTimeout(16);
    }
    await page.mouse.move(width / 3, height / 3, { steps: 8 });
    await page.waitForTimeout(300); // a rest: scroll ends, dwell spans, a short hover
  }
}

async function run(browser, srv, withTracker) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  if (!withTracker) {
    await page.route(srv.url + PATH, async (route) => {
      const res = await route.fetch();
      const body = (await res.text()).replace(/<script[^>]*src="\/microadjust\.js"[^>]*><\/script>/, "");
      await route.fulfill({ response: res, body });
    });
  } else {
    await page.route(srv.url + PATH, (route) => route.continue()); // same routing overhead
  }
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable", { timeDomain: "threadTicks" });
  await page.goto(srv.url + PATH, { waitUntil: "load" });
  const has = await page.evaluate(() => !!(window.microadjust && window.microadjust.state));
  if (has !== withTracker) throw new Error(`tracker present: ${has}, expected ${withTracker}`);
  if (withTracker) await page.waitForFunction(() => microadjust.state().state === "open");
  await page.waitForTimeout(200);
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  const a = await metrics();
  const t0 = performance.now();
  await storm(page);
  const wall = performance.now() - t0;
  const b = await metrics();
  const events = withTracker ? await page.evaluate(() => microadjust.state().seq) : 0;
  await context.close();
  return { script: (b.ScriptDuration - a.ScriptDuration) * 1000, task: (b.TaskDuration - a.TaskDuration) * 1000, wall, events };
}

const rules = arg("rules", "");
const srv = await startServer(rules ? ["--rules", rules] : []);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
});
const results = { with: [], without: [] };
try {
  await run(browser, srv, true); // warm-up (server, caches), not counted
  for (let i = 0; i < RUNS; i++) {
    for (const w of i % 2 ? [false, true] : [true, false]) results[w ? "with" : "without"].push(await run(browser, srv, w));
  }
} finally {
  await browser.close();
  await srv.cleanup();
}
const m = (side, k) => median(results[side].map((r) => r[k]));
const added = m("with", "script") - m("without", "script");
const pairs = results.with.map((r, i) => r.script - results.without[i].script);
const summary = {
  runs: RUNS,
  page: PATH,
  script_ms: { with: +m("with", "script").toFixed(1), without: +m("without", "script").toFixed(1) },
  task_ms: { with: +m("with", "task").toFixed(1), without: +m("without", "task").toFixed(1) },
  wall_ms: { with: +m("with", "wall").toFixed(0), without: +m("without", "wall").toFixed(0) },
  added_script_ms: +added.toFixed(1),
  added_script_ms_paired_median: +median(pairs).toFixed(1),
  added_pct_of_task: +((added / m("without", "task")) * 100).toFixed(2),
  added_pct_of_wall: +((added / m("without", "wall")) * 100).toFixed(2),
  events_per_storm: m("with", "events"),
};
if (process.argv.includes("--json")) console.log(JSON.stringify({ summary, results }, null, 1));
else {
  for (const side of ["with", "without"]) console.log(`${side.padEnd(7)} script ms: ${results[side].map((r) => r.script.toFixed(1)).join(" ")}  task ms: ${results[side].map((r) => r.task.toFixed(1)).join(" ")}`);
  console.log(`median script: ${summary.script_ms.with} ms with, ${summary.script_ms.without} ms without; task (without): ${summary.task_ms.without} ms`);
  console.log(`median storm wall-clock: ${summary.wall_ms.with} ms with, ${summary.wall_ms.without} ms without`);
  console.log(`added main-thread script time: ${summary.added_script_ms} ms per storm (paired median ${summary.added_script_ms_paired_median} ms) = ${summary.added_pct_of_task}% of task time, ${summary.added_pct_of_wall}% of the storm's wall-clock main-thread budget; ${summary.events_per_storm} events`);
}
