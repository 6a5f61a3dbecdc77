// Builds pywasm/dist/: the engine as a pure-Python wheel, registered in a Pyodide lockfile with
// pyodide-build's `pyodide lockfile add-wheels`, next to the Pyodide runtime files copied from the
// npm package `pyodide`. The directory is then a self-contained `indexURL` for pywasm/loader.mjs,
// served by the server under /pywasm/ (server/microadjust/simulator.py). See docs/PYWASM.md.
//
//   npm run build:pywasm
//
// Works offline on a fresh checkout: the tool venv pywasm/.venv (pyodide-build needs Python
// >= 3.12) is created when missing or when pywasm/requirements-build.txt changed.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
const DIST = join(HERE, "dist");
const VENV = join(HERE, ".venv");
const REQUIREMENTS = join(HERE, "requirements-build.txt");
const STAMP = join(VENV, ".requirements-sha256");
// The runtime files Pyodide fetches at boot (pyodide.mjs imports pyodide.asm.js, which fetches the
// wasm; the stdlib zip is mounted at start). Source maps and the classic-script build are not needed.
const RUNTIME = ["pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip"];
// Pre-compressed copies the server sends to browsers that accept gzip (simulator.py): the wasm
// and the JS shrink to about a third; the stdlib zip and the wheel are already compressed.
const GZIP = ["pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "pyodide-lock.json"];

function log(msg) {
  console.log(`build:pywasm: ${msg}`);
}

function fail(msg) {
  console.error(`build:pywasm: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const out = execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", ...opts });
  return (out ?? "").trim(); // null when stdout is inherited
}

/** A Python >= 3.12 interpreter for the tool venv: $PYWASM_PYTHON, then the usual names. */
function findToolPython() {
  const candidates = [
    process.env.PYWASM_PYTHON,
    "python3.13",
    "python3.12",
    "/root/.pyenv/versions/3.13.0/bin/python3.13",
    "/root/.pyenv/versions/3.12.1/bin/python3.12",
    "python3",
  ].filter(Boolean);
  for (const exe of candidates) {
    try {
      const probe = ["-c", "import sys; print(*sys.version_info[:2])"];
      const [major, minor] = run(exe, probe, { stdio: ["ignore", "pipe", "ignore"] }).split(" ").map(Number);
      if (major === 3 && minor >= 12) return exe;
    } catch {
      /* not installed under that name */
    }
  }
  fail(`pyodide-build needs Python >= 3.12; none found among ${candidates.join(", ")} (set PYWASM_PYTHON)`);
}

function ensureToolVenv() {
  const want = createHash("sha256").update(readFileSync(REQUIREMENTS)).digest("hex");
  const pyodideCli = join(VENV, "bin", "pyodide");
  if (existsSync(pyodideCli) && existsSync(STAMP) && readFileSync(STAMP, "utf8") === want) return;
  const python = findToolPython();
  log(`creating the tool venv ${VENV} with ${python} (pyodide-build)`);
  rmSync(VENV, { recursive: true, force: true });
  run(python, ["-m", "venv", VENV], { stdio: "inherit" });
  run(join(VENV, "bin", "python"), ["-m", "pip", "install", "-q", "-r", REQUIREMENTS], { stdio: "inherit" });
  writeFileSync(STAMP, want);
}

function sha256(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function main() {
  const require = createRequire(import.meta.url);
  let runtimeDir;
  try {
    runtimeDir = dirname(require.resolve("pyodide/pyodide-lock.json"));
  } catch {
    fail("the npm package `pyodide` is not installed; run `npm install` first");
  }
  const pyodideVersion = JSON.parse(readFileSync(join(runtimeDir, "package.json"), "utf8")).version;

  ensureToolVenv();
  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });

  const toolPython = join(VENV, "bin", "python");
  const wheel = run(toolPython, [join(HERE, "build_wheel.py"), "--src", join(ROOT, "server"), "--out", DIST]);
  const wheelName = wheel.split("/").pop();
  log(`wheel ${wheelName}`);

  // Relative file_name in the lockfile: Pyodide resolves it against the directory the lockfile
  // was loaded from, so dist/ can be served under any URL prefix.
  run(
    join(VENV, "bin", "pyodide"),
    ["lockfile", "add-wheels", "--input", join(runtimeDir, "pyodide-lock.json"), "--output", join(DIST, "pyodide-lock.json"), wheelName],
    { cwd: DIST, stdio: ["ignore", "pipe", "inherit"] },
  );
  const lock = JSON.parse(readFileSync(join(DIST, "pyodide-lock.json"), "utf8"));
  const entry = lock.packages["microadjust-engine"];
  if (!entry || entry.file_name !== wheelName || entry.sha256 !== sha256(wheel)) {
    fail(`pyodide-lock.json does not register ${wheelName} with its sha256: ${JSON.stringify(entry)}`);
  }

  for (const name of RUNTIME) copyFileSync(join(runtimeDir, name), join(DIST, name));
  // pyodide.asm.js is a classic script; Node would load it as ESM under the root package.json's
  // "type": "module" (pyodide's own package.json is not copied), so dist/ says otherwise.
  writeFileSync(join(DIST, "package.json"), JSON.stringify({ type: "commonjs" }) + "\n");

  for (const name of GZIP) writeFileSync(join(DIST, name + ".gz"), gzipSync(readFileSync(join(DIST, name)), { level: 9 }));

  const files = {};
  for (const name of readdirSync(DIST).sort()) {
    files[name] = { bytes: statSync(join(DIST, name)).size, sha256: sha256(join(DIST, name)) };
  }
  const manifest = { pyodide: pyodideVersion, python: lock.info.python, wheel: wheelName, package: "microadjust-engine", files };
  writeFileSync(join(DIST, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  const total = Object.values(files).reduce((n, f) => n + f.bytes, 0);
  log(`pywasm/dist ready: Pyodide ${pyodideVersion} (Python ${lock.info.python}), ${Object.keys(files).length} files, ${total} bytes`);
}

main();
