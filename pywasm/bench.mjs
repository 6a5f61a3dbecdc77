// Figures for docs/PYWASM.md: the Pyodide engine's cold start, per-batch evaluation time and bytes
// downloaded in Chromium, with CPython's per-batch time on the same batches beside it.
//
//   npm run build:pywasm && node pywasm/bench.mjs [--cold 3] [--batches 300]
//
// Serves pywasm/ with pywasm/serve_simulator.py on a free 127.0.0.1 port. Each cold start uses a
// fresh browser context (empty HTTP cache); the warm start reloads in the same context, where
// every asset is revalidated by ETag (304). Batches are 10 events each, a fixed mix of views,
// hovers, scrolls, dwells and clicks over the demo shop's items, run against the demo rules with
// the profile carried from batch to batch, as the server does for one session.
import { chromium } from "@playwright/test";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PYTHON = join(ROOT, ".venv", "bin", "python");
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const COLD = Number(args.cold ?? 3);
const BATCHES = Number(args.batches ?? 300);
const WARMUP = 20;

function freePort() {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const port = await freePort();
  const proc = spawn(PYTHON, [join(ROOT, "pywasm", "serve_simulator.py"), "--port", String(port)], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + "/readyz")).ok) return { url, stop: () => proc.kill("SIGTERM") };
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill("SIGKILL");
  throw new Error("serve_simulator.py did not start");
}

/** Deterministic batches of 10 events (a small LCG, so every run and both engines see the same). */
function makeBatches(n) {
  const items = [
    ["p1", ["sneakers", "running"]], ["p2", ["running", "outdoor"]], ["p3", ["watches", "luxury"]], ["p4", ["watches", "sale"]],
    ["p5", ["bags", "luxury"]], ["p6", ["sneakers", "sale"]], ["p7", ["outdoor", "bags"]], ["p8", ["watches", "luxury"]],
  ];
  let x = 42;
  const rnd = (m) => ((x = (x * 1103515245 + 12345) % 2147483648), x % m);
  let seq = 0;
  let now = 1732262400000;
  const view = { k: "view", ts: now, url: "/", title: "Shop", items: items.map(([key, tags]) => ({ key, tags, slot: "grid" })) };
  const batches = [];
  for (let b = 0; b < n; b++) {
    now += 500;
    const events = [];
    for (let e = 0; e < 10; e++) {
      const [item, tags] = items[rnd(items.length)];
      const kind = b === 0 && e === 0 ? "view" : ["hover", "scroll", "dwell", "click", "hover"][rnd(5)];
      const ev =
        kind === "view" ? { ...view }
        : kind === "hover" ? { k: "hover", item, tags, dur: 500 + rnd(4000), phase: rnd(2) ? "intent" : "end" }
        : kind === "scroll" ? { k: "scroll", depth: rnd(101), speed: rnd(3000), dir: "down" }
        : kind === "dwell" ? { k: "dwell", item, tags, ms: 200 + rnd(8000) }
        : { k: "click", item, tags };
      events.push({ ...ev, ts: now - 10 + e, seq: ++seq });
    }
    batches.push({ now, events });
  }
  return batches;
}

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function coldStart(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requests = [];
  page.on("requestfinished", (req) => requests.push(req));
  await page.goto(url + "/readyz");
  const timings = await page.evaluate(async () => {
    const t0 = performance.now();
    const { loadEngine } = await import("/pywasm/loader.mjs");
    const engine = await loadEngine({ indexURL: "/pywasm/" });
    window.__engine = engine;
    return { totalMs: performance.now() - t0, ...engine.timings };
  });
  let bytes = 0;
  const perFile = {};
  for (const req of requests) {
    const s = await req.sizes();
    const name = new URL(req.url()).pathname;
    if (name === "/readyz") continue;
    perFile[name] = s.responseBodySize + s.responseHeadersSize;
    bytes += perFile[name];
  }
  return { context, page, timings, bytes, perFile };
}

async function main() {
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const tmp = mkdtempSync(join(tmpdir(), "pywasm-bench-"));
  try {
    const colds = [];
    let last;
    for (let i = 0; i < COLD; i++) {
      if (last) await last.context.close();
      last = await coldStart(browser, server.url);
      colds.push(last);
    }
    const { page, context } = last;
    // Warm start: the same context, so the HTTP cache holds every file and revalidates it.
    const warmRequests = [];
    page.on("requestfinished", (req) => warmRequests.push(req));
    await page.reload();
    const warm = await page.evaluate(async () => {
      const t0 = performance.now();
      const { loadEngine } = await import("/pywasm/loader.mjs");
      window.__engine = await loadEngine({ indexURL: "/pywasm/" });
      return performance.now() - t0;
    });
    let warmBytes = 0;
    for (const req of warmRequests) warmBytes += (await req.sizes()).responseBodySize;

    const batches = makeBatches(WARMUP + BATCHES);
    const rules = JSON.parse(readFileSync(join(ROOT, "server", "microadjust", "demo", "rules.json"), "utf8"));
    const wasm = await page.evaluate(
      ({ batches, rules, warmup }) => {
        const engine = window.__engine;
        let profile = null;
        const ms = [];
        let patches = 0;
        batches.forEach((b, i) => {
          const t = performance.now();
          const r = engine.evaluate(profile, b.events, b.now, rules);
          if (i >= warmup) ms.push(performance.now() - t);
          profile = r.profile;
          patches += r.patches.length;
        });
        return { ms, patches };
      },
      { batches, rules, warmup: WARMUP },
    );
    await context.close();

    const batchFile = join(tmp, "batches.json");
    writeFileSync(batchFile, JSON.stringify(batches));
    const cpython = JSON.parse(
      execFileSync(PYTHON, ["-c", CPYTHON_TIMING, batchFile, join(ROOT, "server", "microadjust", "demo", "rules.json"), String(WARMUP)], { encoding: "utf8" }),
    );

    const manifest = JSON.parse(readFileSync(join(ROOT, "pywasm", "dist", "manifest.json"), "utf8"));
    const med = (xs) => pct(xs, 50);
    const f = (x) => x.toFixed(2);
    console.log(`Pyodide ${manifest.pyodide} (Python ${manifest.python}), Chromium ${browser.version()}, engine wheel ${manifest.files[manifest.wheel].bytes} bytes`);
    console.log(`cold start (fresh context, ${COLD} runs): median ${Math.round(med(colds.map((c) => c.timings.totalMs)))} ms ` +
      `(boot Pyodide ${Math.round(med(colds.map((c) => c.timings.bootMs)))} ms + load engine wheel ${Math.round(med(colds.map((c) => c.timings.loadMs)))} ms)`);
    console.log(`bytes downloaded on a cold start: ${colds[0].bytes} (gzip where accepted)`);
    for (const [name, n] of Object.entries(colds[0].perFile)) console.log(`  ${name.padEnd(56)} ${String(n).padStart(9)}`);
    console.log(`warm start (same context, HTTP cache, ETag revalidation): ${Math.round(warm)} ms, ${warmBytes} body bytes`);
    console.log(`per batch of 10 events, ${BATCHES} batches after ${WARMUP} warm-up, demo rules (${wasm.patches} patches):`);
    console.log(`  Pyodide in Chromium: median ${f(med(wasm.ms))} ms, p95 ${f(pct(wasm.ms, 95))} ms (includes the JSON crossing)`);
    console.log(`  CPython ${cpython.python}:     median ${f(med(cpython.ms))} ms, p95 ${f(pct(cpython.ms, 95))} ms (${cpython.patches} patches)`);
    if (cpython.patches !== wasm.patches) {
      console.error(`parity problem: Pyodide produced ${wasm.patches} patches, CPython ${cpython.patches}`);
      process.exitCode = 1;
    }
  } finally {
    await browser.close();
    server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const CPYTHON_TIMING = `
import json, sys, time
from microadjust.engine import compile_rules, evaluate
batches = json.load(open(sys.argv[1]))
rules = compile_rules(json.load(open(sys.argv[2])))
warmup = int(sys.argv[3])
profile, ms, patches = None, [], 0
for i, b in enumerate(batches):
    t = time.perf_counter()
    r = evaluate(profile, b["events"], b["now"], rules, "granted")
    if i >= warmup:
        ms.append((time.perf_counter() - t) * 1000)
    profile = r["profile"]
    patches += len(r["patches"])
print(json.dumps({"python": sys.version.split()[0], "ms": ms, "patches": patches}))
`;

await main();
