"""Ticks (evaluations without events) give what they gave at another revision, byte for byte.

Replays the load generator's batches (bench/lib/dump_batches.mjs) for 3 visitors, every fourth
step a tick instead of a batch and three ticks (2, 4, 6 s later) after each step, through the
working tree's engine and the engine at REV (default HEAD), and compares the canonical JSON of
every result; also times the ticks on both sides.

    node bench/lib/dump_batches.mjs 400 > /tmp/b.jsonl
    taskset -c 0 .venv/bin/python bench/experiments/tick_parity.py /tmp/b.jsonl [REV]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "server"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpath_cost import RULES, START, canon, load_rev  # noqa: E402

import microadjust.engine as new  # noqa: E402


def main(path: str, rev: str = "HEAD") -> None:
    old, _ = load_rev(rev)
    doc = json.loads(Path(RULES).read_text())
    rules_new, rules_old = new.compile_rules(doc), old.compile_rules(doc)
    batches = [json.loads(line) for line in open(path)][:200]
    diffs = n = 0
    t_new = t_old = 0.0

    def both(p_new, p_old, events, now):
        nonlocal diffs, n, t_new, t_old
        a = time.perf_counter()
        r_new = new.evaluate(p_new, events, now, rules_new)
        b = time.perf_counter()
        r_old = old.evaluate(p_old, events, now, rules_old)
        c = time.perf_counter()
        if not events:
            t_new += b - a
            t_old += c - b
        n += 1
        diffs += canon(r_new) != canon(r_old)
        return r_new, r_old

    for visitor in range(3):
        p_new = p_old = None
        now = START + visitor * 7
        for i, batch in enumerate(batches):
            now += 500
            events = batch["events"] if (i + visitor) % 4 else []
            r_new, r_old = both(p_new, p_old, events, now)
            p_new, p_old = r_new["profile"], r_old["profile"]
            for k in range(3):
                both(p_new, p_old, [], now + 2000 * (k + 1))
    print(f"{n} evaluations, {diffs} differences; ticks: {t_new * 1e3:.0f} ms here, {t_old * 1e3:.0f} ms at {rev}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
