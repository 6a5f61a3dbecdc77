// Profile a Python server under the benchmark load: runs it under `py-spy record` pinned to core 0,
// drives it with bench/loadgen.mjs on core 1, then prints where the time went (self and inclusive
// top frames, bench/experiments/stacks.py) and keeps the raw collapsed stacks and a speedscope file.
//
//   node bench/profile.mjs [--server microadjust|exp:sansio:orjson] [--scenario throughput|latency]
//                          [--conns 200] [--duration 10] [--rate 5] [--redis]
// --redis: microadjust in Redis mode on a private redis-server (free port, pinned to core 0 like the
// server, as in bench/run's Redis scenario).
// Output: bench/results/profile-<server>-<scenario>.{txt,speedscope.json}

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const VENV = path.join(ROOT, ".venv", "bin");
const RESULTS = path.join(ROOT, "bench", "results");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const serverKey = opt("server", "microadjust");
const scenario = opt("scenario", "throughput");
const conns = opt("conns", scenario === "latency" ? "1000" : "200");
const duration = opt("duration", "10");
const rate = opt("rate", "5");
const withRedis = argv.includes("--redis");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});
let redis = null;
let redisArgs = [];
if (withRedis) {
  if (serverKey !== "microadjust") throw new Error("--redis applies to --server microadjust only");
  const rport = await freePort();
  redis = spawn("taskset", ["-c", "0", "redis-server", "--port", String(rport), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no"], { stdio: "ignore" });
  redisArgs = ["--redis", `redis://127.0.0.1:${rport}/0`];
}

function serverCmd(port) {
  if (serverKey === "microadjust") {
    const dir = path.join(RESULTS, "scratch", `profile-${port}`);
    fs.mkdirSync(dir, { recursive: true });
    return [path.join(VENV, "microadjust"), "serve", "--demo", "--host", "127.0.0.1", "--port", String(port), "--data-dir", dir,
      "--limit", "rate_per_s=100000", "--limit", "rate_burst=100000", ...redisArgs];  // as bench/harness.mjs
  }
  if (serverKey === "uvicorn") return [path.join(VENV, "uvicorn"), "--app-dir", "bench/peers", "starlette_peer:app", "--host", "127.0.0.1", "--port", String(port)];
  if (serverKey.startsWith("exp:")) {
    const [, impl, json = "json", ...flags] = serverKey.split(":");
    return [path.join(VENV, "python"), "bench/experiments/ws_impls.py", "--impl", impl, "--json", json,
      ...(flags.includes("gcfreeze") ? ["--gc-freeze"] : []), ...(flags.includes("deflate") ? ["--deflate"] : []), "--port", String(port)];
  }
  throw new Error(`unknown server ${serverKey}`);
}

const port = await freePort();
fs.mkdirSync(RESULTS, { recursive: true });
const stem = path.join(RESULTS, `profile-${serverKey.replaceAll(":", "_")}${withRedis ? "-redis" : ""}-${scenario}`);
const logFd = fs.openSync(`${stem}.log`, "w"); // server and py-spy output
// Collapsed stacks ("raw") for the summary; -r 250 Hz is enough resolution at a few % overhead.
const pyspy = spawn("taskset", ["-c", "0", path.join(VENV, "py-spy"), "record", "-r", "250", "-f", "raw", "-o", `${stem}.txt`,
  "--", ...serverCmd(port)], { cwd: ROOT, stdio: ["ignore", logFd, logFd], env: { ...process.env, PEER_PORT: String(port) } });
const exited = new Promise((r) => pyspy.once("exit", r));

let up = false;
for (let i = 0; i < 300 && !up; i++) {
  up = await new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
  if (!up) await sleep(100);
}
if (!up) {
  console.error(`profile: server did not listen on ${port}`);
  pyspy.kill("SIGINT");
  if (redis) redis.kill("SIGTERM");
  process.exit(1);
}
const lg = spawn("taskset", ["-c", "1", "node", "bench/loadgen.mjs", "--url", `ws://127.0.0.1:${port}/v1/stream?site=demo&v=1`,
  "--origin", `http://127.0.0.1:${port}`, "--scenario", scenario, "--conns", conns, "--duration", duration, "--rate", rate, "--warmup", "1"],
{ cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
let result = null;
readline.createInterface({ input: lg.stdout }).on("line", (l) => { if (l.startsWith("RESULT ")) result = JSON.parse(l.slice(7)); });
await new Promise((r) => lg.once("exit", r));
// SIGINT to py-spy stops the recording and writes the file; the server is its child and goes too.
pyspy.kill("SIGINT");
await Promise.race([exited, sleep(15000)]);
if (redis) redis.kill("SIGTERM");
if (result) {
  console.log(`load: ${result.batches_per_s} batches/s, p50 ${result.latency_ms.p50} ms, p99 ${result.latency_ms.p99} ms, client CPU ${result.client_cpu_pct}% (profiling overhead included)`);
}
const summary = spawnSync(path.join(VENV, "python"), ["bench/experiments/stacks.py", `${stem}.txt`], { cwd: ROOT });
process.stdout.write(summary.stdout);
process.stderr.write(summary.stderr);
