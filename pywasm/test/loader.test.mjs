// The JS face of the Pyodide engine (pywasm/loader.mjs): plain JSON in and out, the returned
// profile safe to hand back, and every bad input answered with a clear error.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { loadEngine, RuleSetError, EngineError } from "../loader.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DIST = join(ROOT, "pywasm", "dist");
const RULES = JSON.parse(readFileSync(join(ROOT, "server", "microadjust", "demo", "rules.json"), "utf8"));
const NOW = 1732262400000;
const VIEW = { k: "view", ts: NOW, seq: 1, url: "/", items: [{ key: "p3", tags: ["watches", "luxury"], slot: "grid" }] };
const HOVER = { k: "hover", ts: NOW + 2500, seq: 2, item: "p3", tags: ["watches", "luxury"], dur: 2500, phase: "intent" };

let engine;
before(async () => {
  assert.ok(existsSync(join(DIST, "pyodide-lock.json")), "pywasm/dist/ is missing: run `npm run build:pywasm` first");
  engine = await loadEngine({ indexURL: DIST });
});

test("loadEngine without indexURL says what it needs", async () => {
  await assert.rejects(loadEngine({}), (err) => err instanceof EngineError && /indexURL/.test(err.message));
});

test("evaluate takes and returns plain JSON: a hover past the intent threshold emphasises the item", () => {
  const first = engine.evaluate(null, [VIEW], NOW, RULES);
  assert.deepEqual(Object.keys(first).sort(), ["changed", "patches", "profile", "reverts"]);
  const second = engine.evaluate(first.profile, [HOVER], NOW + 2600, RULES);
  assert.deepEqual(second.patches.map((p) => p.id), ["hover-emphasis:p3"]);
  assert.deepEqual(second.patches[0].target, { item: "p3" });
  assert.equal(second.patches[0].cause, 2);
});

test("the rules may be given as JSON text, with the same result as the parsed document", () => {
  const a = engine.evaluateJSON(null, [VIEW, HOVER], NOW + 2600, RULES);
  const b = engine.evaluateJSON(null, [VIEW, HOVER], NOW + 2600, JSON.stringify(RULES));
  assert.equal(a, b);
});

test("the returned profile is frozen, since it stands for the engine's exact bytes", () => {
  const { profile } = engine.evaluate(null, [VIEW], NOW, RULES);
  assert.ok(Object.isFrozen(profile) && Object.isFrozen(profile.v));
  assert.throws(() => {
    "use strict";
    profile.v.extra = 1;
  }, TypeError);
});

test("a rule set with errors throws RuleSetError carrying every path", () => {
  const bad = { version: 1, rules: [{ id: "x", priority: 1, when: { ">": [{ var: "session.scrol.speed" }, 1] }, target: { slot: "cta" }, ops: [{ op: "innerHTML" }] }] };
  assert.throws(
    () => engine.evaluate(null, [VIEW], NOW, bad),
    (err) => err instanceof RuleSetError && err.errors.some((e) => e.path === "rules[0].when" && /session\.scrol\.speed/.test(e.msg)) && err.errors.some((e) => e.path.startsWith("rules[0].ops[0]")),
  );
  assert.ok(engine.validate(bad).length >= 2);
  assert.deepEqual(engine.validate(RULES), []);
});

test("rules that are not JSON are reported, not crashed on", () => {
  assert.throws(() => engine.evaluate(null, [], NOW, "{not json"), (err) => err instanceof EngineError && /invalid JSON/.test(err.message));
  assert.match(engine.validate("{not json")[0].msg, /invalid JSON: .*line 1 column 2/);
});

test("jsonError gives Python's line and column, or nothing for valid JSON", () => {
  assert.equal(engine.jsonError('{"a": 1}'), "");
  assert.equal(engine.jsonError('{"a":\n }'), "Expecting value: line 2 column 2 (char 7)");
});

for (const [what, args, pattern] of [
  ["a fractional now", [null, [], 1.5], /now must be integer ms/],
  ["a negative now", [null, [], -1], /now must be integer ms/],
  ["events that are not a list", [null, { k: "view" }, NOW], /events must be an array/],
  ["a profile that is a list", [[], [], NOW], /profile must be an object/],
  ["a profile that is a number", [42, [], NOW], /profile must be an object/],
]) {
  test(`evaluate refuses ${what} with a clear EngineError`, () => {
    assert.throws(() => engine.evaluate(...args, RULES), (err) => err instanceof EngineError && pattern.test(err.message));
  });
}

test("evaluate refuses an unknown consent state", () => {
  assert.throws(() => engine.evaluate(null, [], NOW, RULES, { consent: "maybe" }), (err) => err instanceof EngineError && /consent must be one of/.test(err.message));
});

test("an exception inside the engine becomes an EngineError with its message, and the engine keeps working", () => {
  assert.throws(
    () => engine.evaluate(null, [42], NOW, RULES),
    (err) => err instanceof EngineError && /TypeError: events\[0\] must be an event object/.test(err.message),
  );
  assert.equal(engine.evaluate(null, [VIEW], NOW, RULES).patches.length, 0);
});

test("features reads named feature values of a profile", () => {
  const { profile } = engine.evaluate(null, [VIEW], NOW, RULES);
  assert.deepEqual(engine.features(profile, ["session.views"], NOW, RULES), { "session.views": 1 });
});
