// Builds the tracker with esbuild: the IIFE the server ships (`dist/microadjust.min.js`, copied to
// `server/microadjust/static/microadjust.js`), an ES module build and the hand-written `.d.ts`.
// Prints raw and gzipped sizes on every build and fails when the default bundle is over budget:
// the site owner's promise is "under 6 KB on the wire" (docs/TRACKER.md, "Size budget").
//
// Optional features are compile-time flags (esbuild `define`, MA_<NAME>). The default bundle
// carries what the server's rules read (page views and SPA routes, hover, scroll, dwell, clicks with
// rage/dead, custom events), the cost watch, transport, consent and the patcher;
// `dist/microadjust.full.min.js` adds engaged time, the recently-viewed item history, reading,
// forms, typing cadence and pointer heatmaps. A custom build drops more:  --without=cost
// The outputs are written even when the budget check fails, so a development server keeps
// serving the current code; the non-zero exit is what CI and `make` act on.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
const DIST = join(HERE, "dist");
const STATIC = join(ROOT, "server", "microadjust", "static");
export const BUDGET_GZIP = 6144; // bytes, gzipped, default bundle (issue 3)
// The tracker's share of it (everything but src/patcher/).
export const TRACKER_BUDGET_GZIP = 3686; // 3.6 KB; the patcher's share is 2.4 KB

// Every optional signal, on by default. `--without=a,b` turns flags off for a custom build.
const FEATURES = ["engage", "history", "forms", "keys", "pointer", "read", "cost"];
const OPTIONAL = ["engage", "history", "forms", "keys", "pointer", "read", "cost"]; // not in the default bundle
const args = process.argv.slice(2);
const without = new Set(
  (args.find((a) => a.startsWith("--without=")) || "--without=").slice(10).split(",").filter(Boolean),
);
for (const f of without) {
  if (!FEATURES.includes(f)) {
    console.error(`build: unknown feature "${f}" in --without (known: ${FEATURES.join(", ")})`);
    process.exit(2);
  }
}
const custom = without.size > 0;
const flags = (off) => Object.fromEntries(FEATURES.map((f) => [`MA_${f.toUpperCase()}`, String(!off.includes(f))]));
const define = flags(custom ? [...without] : OPTIONAL);

// Internal property names (the signals' context, config, batcher/transport methods) that the
// minifier may shorten. Never a wire field (PROTOCOL §2-§5), a public API name (docs/TRACKER.md
// "API") or a DOM/JS built-in: those keep their names. A fixed list, not a pattern, so that a new
// name is only shortened when someone has checked it against those three.
const MANGLE = [
  "cfg", "emit", "onHide", "onStop", "onScan", "scan", "rate", "hoverIntent", "flushMs",
  "consentRequired", "respectGpc", "beacon", "welcome", "restore", "shrink", "beaconBodies", "stats",
  "sendBatch", "batcher", "transport", "cleanups", "attempts", "onMessage", "onState", "maxBuffer",
  "maxPending", "timers", "isOnline", "WebSocketImpl", "clock", "causeAt",
];
const common = {
  entryPoints: [join(HERE, "src", "index.js")],
  bundle: true,
  minify: true,
  target: ["es2019"],
  define,
  mangleProps: new RegExp(`^(${MANGLE.join("|")})$`),
  legalComments: "none",
  logLevel: "warning",
};
mkdirSync(DIST, { recursive: true });
const iife = join(DIST, custom ? `microadjust.${[...without].sort().join("-")}-less.min.js` : "microadjust.min.js");
try {
  await build({ ...common, format: "iife", outfile: iife });
  if (!custom) {
    await build({ ...common, entryPoints: [join(HERE, "src", "esm.js")], define: flags([]), format: "esm", minify: false, mangleProps: undefined, outfile: join(DIST, "microadjust.esm.js") });
    await build({ ...common, define: flags([]), format: "iife", outfile: join(DIST, "microadjust.full.min.js") });
  }
} catch (e) {
  console.error(`build: esbuild failed: ${e.message}`);
  process.exit(1);
}
copyFileSync(join(HERE, "types", "microadjust.d.ts"), join(DIST, "microadjust.d.ts"));

const size = (fileOrCode) => {
  const code = typeof fileOrCode === "string" ? readFileSync(fileOrCode) : fileOrCode;
  return { raw: code.length, gzip: gzipSync(code, { level: 9 }).length };
};
const show = (label, s) => console.log(`${label}: ${s.raw} B raw, ${s.gzip} B gzipped`);
const main = size(iife);
show(`${iife.slice(ROOT.length + 1)} (${((main.gzip / BUDGET_GZIP) * 100).toFixed(0)}% of the ${BUDGET_GZIP} B budget)`, main);
if (!custom) {
  show("client_js/dist/microadjust.full.min.js", size(join(DIST, "microadjust.full.min.js")));
  // The patcher's share, so a budget failure says where the bytes are.
  const p = await build({ ...common, entryPoints: [join(HERE, "src", "patcher", "index.js")], format: "esm", write: false });
  const pc = p.outputFiles[0].contents;
  show("  of which patcher/", { raw: pc.length, gzip: gzipSync(pc, { level: 9 }).length });
  // The tracker's share is what it adds to the patcher: default bundle minus the patcher alone.
  // Defined this way the two shares add up to the bundle, so two shares within budget mean a
  // bundle within budget.
  const tracker = { raw: main.raw - pc.length, gzip: main.gzip - gzipSync(pc, { level: 9 }).length };
  show(`  of which the tracker (the rest; ${((tracker.gzip / TRACKER_BUDGET_GZIP) * 100).toFixed(0)}% of its ${TRACKER_BUDGET_GZIP} B share)`, tracker);
  mkdirSync(STATIC, { recursive: true });
  copyFileSync(iife, join(STATIC, "microadjust.js"));
  writeFileSync(join(DIST, "size.json"), JSON.stringify({ ...main, budget: BUDGET_GZIP, tracker: tracker.gzip, trackerBudget: TRACKER_BUDGET_GZIP }) + "\n");
  if (main.gzip > BUDGET_GZIP) {
    console.error(`build: FAILED size budget: the default bundle is ${main.gzip} B gzipped, over ${BUDGET_GZIP} B`);
    process.exit(1);
  }
}
