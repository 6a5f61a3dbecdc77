// Prints the load generator's first N batches of one visitor as JSON lines (same seed, same
// templates as bench/loadgen.mjs), so Python micro-benchmarks replay exactly the bench workload.
//   node bench/lib/dump_batches.mjs 500 > batches.jsonl
import { makePool, render, BATCH } from "./workload.mjs";

const n = Number(process.argv[2] ?? 500);
const pool = makePool(42);
let cursor = 17;
let seq = 1;
const t0 = Date.UTC(2026, 0, 1);
for (let i = 0; i < n; i++) {
  const tpl = i === 0 ? pool[0] : pool[(cursor = (cursor + 37) % pool.length)];
  console.log(render(tpl, seq, t0 + i * 500));
  seq += BATCH;
}
