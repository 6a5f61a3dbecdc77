// Parity: the engine under Pyodide gives exactly CPython's results on every engine vector
// (protocol/vectors/engine/), compared byte for byte after canonical JSON encoding (issue 7).
// CPython's side comes from pywasm/reference.py run with the project's venv.
//
//   npm run test:pywasm        (builds pywasm/dist/ first)
//   node --test pywasm/test/   (against an existing build)
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { loadEngine } from "../loader.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DIST = join(ROOT, "pywasm", "dist");
const VECTORS = join(ROOT, "protocol", "vectors", "engine");
const PYTHON = process.env.MICROADJUST_PYTHON || join(ROOT, ".venv", "bin", "python");

const vectorFiles = readdirSync(VECTORS).filter((f) => f.endsWith(".json")).sort();
let engine;
let reference;

before(async () => {
  assert.ok(existsSync(join(DIST, "pyodide-lock.json")), "pywasm/dist/ is missing: run `npm run build:pywasm` first");
  const out = execFileSync(PYTHON, [join(ROOT, "pywasm", "reference.py"), "--vectors", VECTORS], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  reference = JSON.parse(out);
  engine = await loadEngine({ indexURL: DIST + "/" });
});

function rulesText(vector) {
  return vector.rules_file ? readFileSync(join(ROOT, vector.rules_file), "utf8") : JSON.stringify(vector.rules);
}

test("there are engine vectors, and CPython ran exactly the same files", () => {
  assert.ok(vectorFiles.length >= 10, `only ${vectorFiles.length} vectors in ${VECTORS}`);
  assert.deepEqual(Object.keys(reference.vectors).sort(), vectorFiles);
});

test("the engine loaded from the wheel is the checkout's version", () => {
  const init = readFileSync(join(ROOT, "server", "microadjust", "__init__.py"), "utf8");
  assert.equal(engine.version, /__version__\s*=\s*"([^"]+)"/.exec(init)[1]);
});

for (const file of vectorFiles) {
  test(`${file}: run_vector under Pyodide equals CPython byte for byte`, () => {
    const vectorText = readFileSync(join(VECTORS, file), "utf8");
    const vector = JSON.parse(vectorText);
    const got = engine.runVectorJSON(vectorText, vector.rules_file ? rulesText(vector) : null);
    assert.equal(got, reference.vectors[file].run_vector);
  });

  test(`${file}: evaluate() through the JS API, profile carried in JS, equals CPython step by step`, () => {
    // How a page uses the engine: plain JS objects in and out, the returned profile handed back
    // on the next batch. Nothing may be lost crossing the JS boundary.
    const vector = JSON.parse(readFileSync(join(VECTORS, file), "utf8"));
    const rules = JSON.parse(rulesText(vector));
    let profile = vector.profile ?? null;
    const want = reference.vectors[file].steps;
    assert.equal(want.length, vector.steps.length);
    vector.steps.forEach((step, i) => {
      const consent = step.consent ?? "granted";
      const text = engine.evaluateJSON(profile, step.events ?? [], step.now, rules, { consent });
      assert.equal(text, want[i], `step ${i} (now=${step.now}) differs`);
      profile = engine.evaluate(profile, step.events ?? [], step.now, rules, { consent }).profile;
    });
  });

  test(`${file}: a profile re-parsed by JS (0.0 becomes 0) still gives CPython's decisions`, () => {
    // A profile snapshot that came from the server as JSON, or from localStorage, has lost the
    // int/float distinction; patches, reverts and changed features must not depend on it.
    const vector = JSON.parse(readFileSync(join(VECTORS, file), "utf8"));
    const rules = JSON.parse(rulesText(vector));
    let profile = vector.profile ?? null;
    vector.steps.forEach((step, i) => {
      const got = engine.evaluate(profile, step.events ?? [], step.now, rules, { consent: step.consent ?? "granted" });
      const want = JSON.parse(reference.vectors[file].steps[i]);
      assert.deepEqual(
        { patches: got.patches, reverts: got.reverts, changed: got.changed },
        { patches: want.patches, reverts: want.reverts, changed: want.changed },
        `step ${i} (now=${step.now})`,
      );
      profile = JSON.parse(JSON.stringify(got.profile));
    });
  });
}
