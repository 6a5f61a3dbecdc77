"""Per-batch cost of evaluate() with 10 vs 1,000 rules when a batch touches few features.

Issue 4 asks to show that the rule index makes 1,000 rules cost about the same per batch as 10:
rules are indexed by the features they read, so a batch re-evaluates only the rules whose inputs
changed. The same 1,000 rules are also timed with the index bypassed (every state rule evaluated
on every batch) so the figure shows what the index buys. The demo rule set gets its own line
(issue 4: a batch of 10 events well under 1 ms).

Run:  .venv/bin/python bench/rules_bench.py            (about 5 s on one core)
      .venv/bin/python bench/rules_bench.py --json     (machine-readable)
Figures are written to docs/RULES.md, section "Performance".
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from microadjust.engine import compile_rules, evaluate  # noqa: E402

T0 = 1_732_262_400_000
TAGS = [f"t{i}" for i in range(1000)]


def synthetic_rules(n: int) -> dict:
    """n rules shaped like a large catalogue's: a third per-item event rules, the rest state rules
    over the interest and recent views of one tag each (so a batch touches few rules' inputs)."""
    rules = []
    for i in range(n):
        tag = TAGS[i % len(TAGS)]
        if i % 3 == 0:
            rules.append({
                "id": f"hover-{i}", "on": ["hover"], "cooldown": 0,
                "when": {"and": [{"==": [{"var": "event.item"}, f"i{i}"]}, {">=": [{"var": "event.dur"}, 60000]}]},
                "target": {"item": "{{event.item}}"}, "ops": [{"op": "addClass", "class": f"c{i}"}], "ttl": 30000,
            })
        else:
            rules.append({
                "id": f"state-{i}",
                "when": {"and": [{">=": [{"var": f"profile.interest.tag.{tag}"}, 50]}, {">=": [{"var": f"profile.recent.tag.{tag}"}, 4]}]},
                "target": {"slot": f"s{i}"}, "ops": [{"op": "show"}], "ttl": 0,
            })
    # Thresholds no batch reaches: we time evaluation, not the cap (5 patches) cutting work short.
    return {"settings": {"max_adjustments": 5}, "rules": rules}


def page_items() -> list[dict]:
    return [{"key": f"i{k}", "tags": [TAGS[(7 * k) % 1000], TAGS[(7 * k + 3) % 1000]], "slot": "grid"} for k in range(20)]


def batch(seq: int) -> list[dict]:
    """10 events touching a handful of features: 2 hovers, 3 scrolls, 2 dwells, 2 clicks, 1 custom."""
    ev = [
        {"k": "hover", "item": "i1", "dur": 2000, "phase": "intent"},
        {"k": "scroll", "depth": 30, "speed": 400},
        {"k": "dwell", "item": "i2", "ms": 2500},
        {"k": "scroll", "depth": 45, "speed": 380},
        {"k": "click", "el": "button#more"},
        {"k": "hover", "item": "i1", "dur": 4200, "phase": "end"},
        {"k": "scroll", "depth": 50, "speed": 350},
        {"k": "dwell", "slot": "sec-1", "ms": 1800},
        {"k": "click", "item": "i2"},
        {"k": "custom", "name": "newsletter_open", "props": {"where": "footer"}},
    ]
    return [dict(e, ts=T0, seq=seq + i) for i, e in enumerate(ev)]


def measure(ruleset, repeats: int, label: str) -> dict:
    profile = evaluate(None, [{"k": "view", "ts": T0, "seq": 1, "url": "/", "items": page_items()}], T0, ruleset)["profile"]
    samples = []
    seq = 2
    for r in range(repeats):
        events = batch(seq)
        seq += len(events)
        now = T0 + 1000 * (r + 1)
        start = time.perf_counter()
        result = evaluate(profile, events, now, ruleset)
        samples.append(time.perf_counter() - start)
        # Carry the profile forward like the server does, but keep interest from piling up.
        if r % 50 == 49:
            profile = evaluate(None, [{"k": "view", "ts": T0, "seq": 1, "url": "/", "items": page_items()}], now, ruleset)["profile"]
        else:
            profile = result["profile"]
    samples.sort()
    return {
        "label": label,
        "rules": len(ruleset),
        "batches": repeats,
        "median_us": round(statistics.median(samples) * 1e6, 1),
        "p95_us": round(samples[int(0.95 * (len(samples) - 1))] * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1500, help="batches timed per configuration")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    small = compile_rules(synthetic_rules(10))
    large = compile_rules(synthetic_rules(1000))
    unindexed = compile_rules(synthetic_rules(1000))
    unindexed.clock_rules = list(unindexed.state_rules)  # bypass the index: every state rule, every batch
    demo = compile_rules(json.loads((ROOT / "server" / "microadjust" / "demo" / "rules.json").read_text()))

    rows = [
        measure(small, args.repeats, "10 rules, indexed"),
        measure(large, args.repeats, "1,000 rules, indexed"),
        measure(unindexed, max(args.repeats // 5, 100), "1,000 rules, index bypassed"),
        measure(demo, args.repeats, "demo rules (8)"),
    ]
    ratio = rows[1]["median_us"] / rows[0]["median_us"]
    info = {"python": platform.python_version(), "machine": platform.machine(), "events_per_batch": 10}
    if args.json:
        print(json.dumps({"info": info, "rows": rows, "ratio_1000_vs_10": round(ratio, 2)}, indent=2))
        return
    print(f"evaluate() per batch of 10 events, CPython {info['python']} ({info['machine']})")
    print(f"{'configuration':32} {'median':>10} {'p95':>10}")
    for row in rows:
        print(f"{row['label']:32} {row['median_us']:>8.1f}us {row['p95_us']:>8.1f}us")
    print(f"ratio 1,000 vs 10 rules (indexed, median): {ratio:.2f}x")
    print(f"ratio index bypassed vs indexed (1,000 rules): {rows[2]['median_us'] / rows[1]['median_us']:.1f}x")


if __name__ == "__main__":
    main()
