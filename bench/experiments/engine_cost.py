"""Per-batch CPU cost of the pieces of microadjust's batch path, on the bench workload.

Replays the load generator's batches (bench/lib/dump_batches.mjs, same seed) through the pure
engine with the demo rules, one visitor, and times what the profile (bench/profile.mjs) showed to
matter: `evaluate`, the memory store's `copy.deepcopy` of the profile (done twice per batch: load
and commit), the engine's own `copy_json`, and encoding/decoding with json, ujson, orjson.
Single-threaded timings in microseconds per batch; run it on an idle core for stable figures.

    node bench/lib/dump_batches.mjs 400 > /tmp/batches.jsonl
    .venv/bin/python bench/experiments/engine_cost.py /tmp/batches.jsonl
"""

from __future__ import annotations

import copy
import gc
import json
import sys
import time
from pathlib import Path

import ujson

from microadjust.engine import compile_rules, evaluate
from microadjust.engine.profile import copy_json

try:
    import orjson
except ImportError:  # optional: only to compare
    orjson = None

RULES = Path(__file__).resolve().parents[2] / "server" / "microadjust" / "demo" / "rules.json"


def timed(fn, reps: int) -> float:
    """Best of 3 runs of `reps` calls, in microseconds per call (best: least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps * 1e6)
    return best


def main(path: str) -> None:
    texts = [line for line in Path(path).read_text().splitlines() if line.strip()]
    ruleset = compile_rules(json.loads(RULES.read_text()))
    msgs = [json.loads(t) for t in texts]
    # Build the profile a visitor has after these batches (what load/commit copy each time).
    profile, now = None, 1_767_225_600_000
    t = time.perf_counter()
    for m in msgs:
        events = [dict(e, seq=m["seq"] + i) for i, e in enumerate(m["events"])]
        now += 500
        profile = evaluate(profile, events, now, ruleset, consent="granted")["profile"]
    per_eval = (time.perf_counter() - t) / len(msgs) * 1e6
    prof_json = json.dumps(profile)
    mid = msgs[len(msgs) // 2]
    events = [dict(e, seq=mid["seq"] + i) for i, e in enumerate(mid["events"])]
    rows = [
        ("evaluate (demo rules, 10 events), mean over the replay", per_eval),
        ("evaluate, one batch on the grown profile", timed(lambda: evaluate(profile, events, now, ruleset, consent="granted"), 300)),
        ("copy.deepcopy(profile)  [memory store: x2 per batch]", timed(lambda: copy.deepcopy(profile), 300)),
        ("engine copy_json(profile)", timed(lambda: copy_json(profile), 300)),
        ("json.loads(batch text)", timed(lambda: json.loads(texts[5]), 3000)),
        ("ujson.loads(batch text)", timed(lambda: ujson.loads(texts[5]), 3000)),
        ("json.dumps(profile)", timed(lambda: json.dumps(profile), 300)),
        ("ujson.dumps(profile)", timed(lambda: ujson.dumps(profile), 300)),
    ]
    if orjson is not None:
        rows += [
            ("orjson.loads(batch text)", timed(lambda: orjson.loads(texts[5]), 3000)),
            ("orjson.dumps(profile)", timed(lambda: orjson.dumps(profile), 300)),
        ]
    gc.collect()
    print(f"{len(msgs)} batches replayed; profile is {len(prof_json)} bytes as JSON")
    for name, us in rows:
        print(f"  {us:9.1f} us  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
