// Builds the tracker with esbuild: the IIFE the server ships (`dist/microadjust.min.js`, copied to
// `server/microadjust/static/microadjust.js`), an ES module build, the full IIFE, the lazily loaded
// patcher chunk (`dist/microadjust-patcher.js`, an ES module copied next to the tracker in
// static/) and the hand-written `.d.ts`. Prints raw and gzipped sizes of every file on every build
// and fails when the default bundle is over budget: the site owner's promise is "under 6 KB on
// the wire" (docs/TRACKER.md, "Size budget"). The chunk is not part of that promise's bytes: it
// is fetched only by a page that gets a patch (src/lazy.js), and its size is printed separately.
//
// Optional features are compile-time flags (esbuild `define`, MA_<NAME>). The default bundle
// carries what the server's rules read (page views and SPA routes, hover, scroll, dwell, clicks with
// rage/dead, custom events), transport, consent and the patcher's stand-in (src/lazy.js);
// `dist/microadjust.full.min.js` adds engaged time, the recently-viewed item history, reading,
// forms, typing cadence, pointer heatmaps and the cost watch. A custom build drops some:
// --without=cost
// The outputs are written even when the budget check fails, so a development server keeps
// serving the current code; the non-zero exit is what CI and `make` act on.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { execFileSync } from "node:child_process";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
const DIST = join(HERE, "dist");
const STATIC = join(ROOT, "server", "microadjust", "static");
export const BUDGET_GZIP = 6144; // bytes, gzipped, default bundle (issue 3)
// Loaded with import() from next to the tracker (src/lazy.js, src/esm.js); served by the server.
export const CHUNKS = { "microadjust-patcher.js": join(HERE, "src", "patcher", "chunk.js") };

// Every optional signal, on by default. `--without=a,b` turns flags off for a custom build.
const FEATURES = ["engage", "history", "forms", "keys", "pointer", "read", "cost", "dead"];
const OPTIONAL = ["engage", "history", "forms", "keys", "pointer", "read", "cost", "dead"]; // not in the default bundle
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
// minifier may shorten. Never a wire field, a name that crosses into the patcher chunk (built
// separately, so it would be shortened differently: `causeAt` is one, hence not listed) (PROTOCOL §2-§5), a public API name (docs/TRACKER.md
// "API") or a DOM/JS built-in: those keep their names. A fixed list, not a pattern, so that a new
// name is only shortened when someone has checked it against those three.
const MANGLE = [
  "cfg", "emit", "onHide", "onStop", "onScan", "scan", "rate", "hoverIntent", "flushMs",
  "consentRequired", "respectGpc", "beacon", "welcome", "restore", "shrink", "beaconBodies", "stats",
  "sendBatch", "batcher", "transport", "cleanups", "attempts", "onMessage", "onState", "maxBuffer",
  "maxPending", "timers", "isOnline", "WebSocketImpl", "clock", "reset", "online", "start", "stop", "open", "end", "hello", "load", "save",
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
    await build({ ...common, entryPoints: [join(HERE, "src", "esm.js")], define: flags([]), format: "esm", target: ["es2020"] /* import.meta */, minify: false, mangleProps: undefined, outfile: join(DIST, "microadjust.esm.js") });
    await build({ ...common, define: flags([]), format: "iife", outfile: join(DIST, "microadjust.full.min.js") });
    // Shared by every build above (their property mangling does not reach into it).
    for (const [name, entry] of Object.entries(CHUNKS))
      await build({ ...common, entryPoints: [entry], define: flags([]), mangleProps: undefined, format: "esm", outfile: join(DIST, name) });
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
// The budget is checked on what `gzip -9 -c <file> | wc -c` prints, the stricter figure (gzip's
// header carries the file name, and its deflate is not zlib's): where no gzip command exists,
// zlib's size plus the name's bytes stands in for it.
const gzipFile = (file) => {
  try {
    return execFileSync("gzip", ["-9", "-c", file], { maxBuffer: 1 << 24 }).length;
  } catch (e) {
    return gzipSync(readFileSync(file), { level: 9 }).length + basename(file).length + 1;
  }
};
const main = { ...size(iife), gzip: gzipFile(iife) };
show(`${iife.slice(ROOT.length + 1)} (default; ${((main.gzip / BUDGET_GZIP) * 100).toFixed(0)}% of the ${BUDGET_GZIP} B budget)`, main);
if (!custom) {
  show("client_js/dist/microadjust.esm.js (ES module, not minified)", size(join(DIST, "microadjust.esm.js")));
  show("client_js/dist/microadjust.full.min.js", size(join(DIST, "microadjust.full.min.js")));
  const chunks = {};
  for (const name of Object.keys(CHUNKS)) {
    chunks[name] = size(join(DIST, name)).gzip;
    show(`client_js/dist/${name} (patcher chunk, fetched after the socket's welcome; not in the budget)`, size(join(DIST, name)));
  }
  mkdirSync(STATIC, { recursive: true });
  copyFileSync(iife, join(STATIC, "microadjust.js"));
  for (const name of Object.keys(CHUNKS)) copyFileSync(join(DIST, name), join(STATIC, name));
  writeFileSync(join(DIST, "size.json"), JSON.stringify({ ...main, budget: BUDGET_GZIP, chunks }) + "\n");
  if (main.gzip > BUDGET_GZIP) {
    console.error(`build: FAILED size budget: the default bundle is ${main.gzip} B gzipped, over ${BUDGET_GZIP} B`);
    process.exit(1);
  }
}
