// Builds the tracker with esbuild: the IIFE the server ships (`dist/microadjust.min.js`, copied to
// `server/microadjust/static/microadjust.js`), an ES module build and the hand-written `.d.ts`.
// Prints raw and gzipped sizes on every build and fails when the default bundle is over budget:
// the site owner's promise is "under 6 KB on the wire" (docs/TRACKER.md, "Size budget").
//
// Optional features are compile-time flags (esbuild `define`), so a site can build a smaller
// script without them:  node client_js/build.mjs --without=pointer,keys,forms,read,cost
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

// Every optional signal, on by default. `--without=a,b` turns flags off for a custom build.
const FEATURES = ["forms", "keys", "pointer", "read", "cost"];
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
const define = Object.fromEntries(FEATURES.map((f) => [`MA_${f.toUpperCase()}`, String(!without.has(f))]));

const common = {
  entryPoints: [join(HERE, "src", "index.js")],
  bundle: true,
  minify: true,
  target: ["es2019"],
  define,
  legalComments: "none",
  logLevel: "warning",
};

mkdirSync(DIST, { recursive: true });
const iife = join(DIST, custom ? `microadjust.${[...without].sort().join("-")}-less.min.js` : "microadjust.min.js");
try {
  await build({ ...common, format: "iife", outfile: iife });
  if (!custom) await build({ ...common, format: "esm", minify: false, outfile: join(DIST, "microadjust.esm.js") });
} catch (e) {
  console.error(`build: esbuild failed: ${e.message}`);
  process.exit(1);
}
copyFileSync(join(HERE, "types", "microadjust.d.ts"), join(DIST, "microadjust.d.ts"));

const code = readFileSync(iife);
const gz = gzipSync(code, { level: 9 }).length;
const pct = ((gz / BUDGET_GZIP) * 100).toFixed(0);
console.log(`${iife.slice(ROOT.length + 1)}: ${code.length} B raw, ${gz} B gzipped (${pct}% of the ${BUDGET_GZIP} B budget)`);
if (!custom) {
  if (gz > BUDGET_GZIP) {
    console.error(`build: FAILED size budget: default bundle is ${gz} B gzipped, over ${BUDGET_GZIP} B`);
    process.exit(1);
  }
  mkdirSync(STATIC, { recursive: true });
  copyFileSync(iife, join(STATIC, "microadjust.js"));
  writeFileSync(join(DIST, "size.json"), JSON.stringify({ raw: code.length, gzip: gz, budget: BUDGET_GZIP }) + "\n");
}
