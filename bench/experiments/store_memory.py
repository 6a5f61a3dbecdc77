"""Memory the embedded store holds per visitor (one session each), for the `store_visitors` cap.

Replays the load generator's batches (bench/lib/dump_batches.mjs, fixed seed) through the real
engine with the demo rules into a MemoryStore for N visitors, then measures what the store holds
with tracemalloc (everything allocated and still alive, minus the same replay's state before the
store was filled). Prints bytes per visitor after 1, 10 and 100 batches each.

    node bench/lib/dump_batches.mjs 400 > /tmp/batches.jsonl
    .venv/bin/python bench/experiments/store_memory.py /tmp/batches.jsonl [VISITORS]
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from pathlib import Path

from hotpath_cost import RULES, START, run  # this folder is on sys.path when run as a script
from microadjust import engine
from microadjust.store.memory import MemoryStore


def fill(batches, visitors: int, per_visitor: int, ruleset) -> int:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store = MemoryStore(log=None, max_visitors=visitors)
    for v in range(visitors):
        vid, sid = f"v_bench_visitor_{v:08d}", f"s_bench_session_{v:08d}"  # tracker-length ids
        now = START
        for events in batches[:per_visitor]:
            now += 500
            snap = run(store.load(vid, sid))
            result = engine.evaluate(snap.profile, events, now, ruleset, consent="granted")
            assert run(store.commit(vid, sid, snap, result["profile"], events[-1]["seq"], 0, events))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(store) == visitors
    return held


def main(path: str, visitors: int = 1000) -> None:
    msgs = [json.loads(t) for t in Path(path).read_text().splitlines() if t.strip()]
    batches = [[dict(e, seq=m["seq"] + i) for i, e in enumerate(m["events"])] for m in msgs]
    ruleset = engine.compile_rules(json.loads(RULES.read_text()))
    print(f"{visitors} visitors, one session each; bytes held by the store per visitor:")
    for n in (1, 10, 100):
        held = fill(batches, visitors, n, ruleset)
        print(f"  after {n:3d} batches each: {held / visitors:8.0f} B")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
