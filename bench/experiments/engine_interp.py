"""The pure engine's cost per batch under whichever interpreter runs this file (CPython, PyPy).

The engine is standard library only, so any Python can run it. This copies
`server/microadjust/engine/` into a scratch directory, adding `from __future__ import
annotations` to modules that lack it (so that a 3.9 interpreter such as Debian's PyPy parses the
`X | None` annotations; nothing else is changed), replays the load generator's batches
(bench/lib/dump_batches.mjs, same seed) through `evaluate` with the demo rules for 4 visitors,
and prints microseconds per batch for 8 rounds, or $ROUNDS (the first rounds of a JIT are its warm-up):

- `engine`: the profile object is handed from one batch to the next (no store);
- `engine + json`: the profile goes through the stdlib `json` between batches, as a store
  that keeps bytes does (the server uses orjson, which PyPy does not have).

    node bench/lib/dump_batches.mjs 400 > /tmp/batches.jsonl
    apt-get install -y pypy3                       # Debian 12: PyPy 7.3.11, Python 3.9
    taskset -c 0 python3 bench/experiments/engine_interp.py /tmp/batches.jsonl
    taskset -c 0 pypy3 bench/experiments/engine_interp.py /tmp/batches.jsonl

It also prints a digest of every batch's results (canonical JSON), so two interpreters can be
checked to compute the same thing.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600_000
ROUNDS = int(os.environ.get("ROUNDS", "8"))
FUTURE = "from __future__ import annotations\n"


def engine_copy():
    tmp = Path(tempfile.mkdtemp(prefix="engine-interp-"))
    shutil.copytree(ROOT / "server" / "microadjust" / "engine", tmp / "engine")
    for path in (tmp / "engine").glob("*.py"):
        src = path.read_text()
        if FUTURE not in src:
            doc = re.match(r'\s*("""|\'\'\').*?\1\s*\n', src, re.S)
            at = doc.end() if doc else 0
            path.write_text(src[:at] + FUTURE + src[at:])
    sys.path.insert(0, str(tmp))
    import engine
    return engine


def main(path: str) -> None:
    engine = engine_copy()
    ruleset = engine.compile_rules(json.loads((ROOT / "server/microadjust/demo/rules.json").read_text()))
    msgs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    batches = [[dict(e, seq=m["seq"] + i) for i, e in enumerate(m["events"])] for m in msgs]

    def replay(through_json: bool, digest=None) -> int:
        profiles, now, n = {}, START, 0
        for events in batches:
            now += 500
            for v in range(4):
                p = profiles.get(v)
                if through_json and p is not None:
                    p = json.loads(p)
                r = engine.evaluate(p, events, now, ruleset, consent="granted")
                profiles[v] = json.dumps(r["profile"]) if through_json else r["profile"]
                if digest is not None:
                    keys = ("profile", "patches", "reverts", "changed")
                    digest.update(json.dumps([r[k] for k in keys], sort_keys=True).encode())
                n += 1
        return n

    digest = hashlib.sha256()
    replay(False, digest)
    impl = sys.implementation.name
    print(f"{impl} {sys.version.split()[0]}: {len(batches) * 4} batches, results sha256 {digest.hexdigest()[:16]}")
    for through_json in (False, True):
        label = "engine + json" if through_json else "engine"
        rounds = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            n = replay(through_json)
            rounds.append((time.perf_counter() - t) / n * 1e6)
        print(f"  {label:14} us/batch by round: " + " ".join(f"{x:.1f}" for x in rounds)
              + f"  (best {min(rounds):.1f})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
