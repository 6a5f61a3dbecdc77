// The rule simulator (/simulator, issue 7) in real Chromium: the server's engine runs in the page
// under Pyodide with the page's strict CSP, shows which patches a recorded visit would get and
// when (the same ones CPython computes), and points at the exact place of every input error.
//
// Needs `npm run build:pywasm`. Runs against the real `microadjust serve --demo`.
import { test, expect } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startServer } from "./fixtures.mjs";

const PYTHON = join(ROOT, ".venv", "bin", "python");
let server;

test.beforeAll(async () => {
  if (!existsSync(join(ROOT, "pywasm", "dist", "manifest.json"))) throw new Error("run `npm run build:pywasm` first");
  server = await startServer(); // the real `microadjust serve --demo`, which mounts /simulator
});

test.afterAll(async () => server?.cleanup());

/** Patch ids per step that CPython's engine gives for the example visit with the demo rules. */
function cpythonPatchIds() {
  const script = `
import json, sys
from microadjust.engine import compile_rules, evaluate
rules = compile_rules(json.load(open(sys.argv[1])))
steps = json.load(open(sys.argv[2]))["steps"]
seq, profile, out = 0, None, []
for step in steps:
    events = []
    for ev in step["events"]:
        seq += 1
        events.append({**ev, "seq": seq})
    r = evaluate(profile, events, step["now"], rules, "granted")
    profile = r["profile"]
    out.append([p["id"] for p in r["patches"]])
print(json.dumps(out))`;
  const rules = join(ROOT, "server", "microadjust", "demo", "rules.json");
  const seq = join(ROOT, "pywasm", "simulator", "example-sequence.json");
  return JSON.parse(execFileSync(PYTHON, ["-c", script, rules, seq], { encoding: "utf8" }));
}

async function openSimulator(page) {
  const violations = [];
  page.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) violations.push(msg.text());
  });
  const response = await page.goto(server.url + "/simulator");
  expect(response.status()).toBe(200);
  expect(response.headers()["content-security-policy"]).toContain("script-src 'self' 'wasm-unsafe-eval'");
  await expect(page.locator("#engine-status")).toHaveAttribute("data-state", "ready", { timeout: 45_000 });
  return violations;
}

test("the engine loads under the page's strict CSP and the example visit shows CPython's patches step by step", async ({ page }) => {
  const violations = await openSimulator(page);
  await page.click("#load-demo-rules");
  await page.click("#load-example");
  await expect(page.locator("#sequence")).not.toHaveValue("");
  await expect(page.locator("#rules")).not.toHaveValue("");
  await page.click("#run");
  await expect(page.locator("#results")).toBeVisible();

  const want = cpythonPatchIds();
  expect(want.flat().length).toBeGreaterThan(0);
  const rows = page.locator("#timeline tbody tr");
  await expect(rows).toHaveCount(want.length);
  const shown = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll(".patch .id")].map((n) => n.textContent)));
  expect(shown).toEqual(want);
  // The example's long hover on the luxury watch is emphasised at the step it happens.
  await expect(rows.nth(1)).toContainText("hover-emphasis:p3");
  await expect(page.locator("#summary")).toContainText(`${want.flat().length} patch`);
  expect(violations).toEqual([]);
});

test("a rule reading a misspelt feature is pointed at with its path and a suggestion", async ({ page }) => {
  await openSimulator(page);
  const rules = {
    version: 1,
    rules: [{ id: "fast-scroll", priority: 1, when: { ">": [{ var: "session.scrol.speed" }, 100] }, target: { slot: "cta" }, ops: [{ op: "addClass", class: "x" }] }],
  };
  await page.fill("#rules", JSON.stringify(rules, null, 1));
  await page.fill("#sequence", JSON.stringify([{ now: 1000, events: [] }]));
  await page.click("#run");
  const errors = page.locator("#error-list li");
  await expect(errors).toHaveCount(1);
  await expect(errors.first()).toContainText("rule set: rules[0].when: unknown feature session.scrol.speed");
  await expect(errors.first()).toContainText("did you mean session.scroll.speed?");
  await expect(page.locator("#results")).toBeHidden();
});

test("bad sequences are refused with the place of each problem", async ({ page }) => {
  await openSimulator(page);
  await page.click("#load-demo-rules");
  await expect(page.locator("#rules")).not.toHaveValue("");

  await page.fill("#sequence", '[{"now": 1000,\n "events": [}]');
  await page.click("#run");
  await expect(page.locator("#error-list li")).toContainText(["event sequence: invalid JSON: Expecting value: line 2 column 13"]);

  const seq = [
    { now: 2000, events: [{ k: "hover", ts: 2000, item: "p1", dur: "long", phase: "intent" }] },
    { now: 1000, events: [] },
  ];
  await page.fill("#sequence", JSON.stringify(seq));
  await page.click("#run");
  await expect(page.locator("#error-list li")).toContainText([
    "sequence.steps[0].events[0].dur: must be a non-negative integer",
    "sequence.steps[1].now: goes back in time (1000 < 2000)",
  ]);
  await expect(page.locator("#results")).toBeHidden();
});

test("an unknown event kind and a resent seq are dropped as the server drops them, and the rest runs", async ({ page }) => {
  await openSimulator(page);
  await page.click("#load-demo-rules");
  await expect(page.locator("#rules")).not.toHaveValue("");
  const seq = [
    { now: 1000, events: [{ k: "view", ts: 1000, seq: 1, url: "/" }, { k: "teleport", ts: 1000, seq: 2 }] },
    { now: 2000, events: [{ k: "click", ts: 2000, seq: 1, item: "p1" }] },
  ];
  await page.fill("#sequence", JSON.stringify(seq));
  await page.click("#run");
  await expect(page.locator("#results")).toBeVisible();
  await expect(page.locator("#timeline tbody tr")).toHaveCount(2);
  await expect(page.locator("#errors h2")).toHaveText("Dropped as the server would");
  await expect(page.locator("#error-list li")).toContainText([
    'sequence.steps[0].events[1].k: unknown event kind "teleport"',
    "sequence.steps[1].events[0].seq: seq 1 was already stored",
  ]);
});

test("markup in a pasted sequence is shown as text, never parsed as HTML", async ({ page }) => {
  await openSimulator(page);
  await page.click("#load-demo-rules");
  await expect(page.locator("#rules")).not.toHaveValue("");
  const markup = '<img src=x onerror="window.__xss=1">';
  await page.fill("#sequence", JSON.stringify([{ now: 1000, events: [{ k: "click", ts: 1000, item: markup }] }]));
  await page.click("#run");
  await expect(page.locator("#timeline tbody tr").first()).toContainText(markup);
  expect(await page.locator("#results img").count()).toBe(0);
  expect(await page.evaluate(() => window.__xss)).toBeUndefined();
});
