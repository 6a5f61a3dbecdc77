"""Per-message cost of inbound decoding + validation (protocol.py), a revision against the tree.

Loads `server/microadjust/protocol.py` as it is at a git revision (default HEAD) next to the
working tree's, and
1. replays the bench workload's batches as text (`decode` + `validate_client_message(obj, 100)`)
   through both, interleaved, best of 5 rounds, and prints microseconds per message and the ratio;
2. checks that both give the same result for every batch, and for thousands of mutated or broken
   messages (wrong types, missing fields, out-of-range numbers, unknown kinds, huge strings,
   bools for ints, NaN/inf, nested junk, truncated JSON), generated with a fixed seed from the
   batches and the shared vectors: identical values (a faithful repr of dataclasses, dicts in key
   order, lists, tuples, scalars with their types) or an identical ProtocolError (code, path,
   msg, detail). Exits 1 on any difference.

    node bench/lib/dump_batches.mjs 400 > /tmp/pv_b.jsonl
    .venv/bin/python bench/experiments/validate_cost.py /tmp/pv_b.jsonl [REV]
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib.util
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "server/microadjust/protocol.py"
ROUNDS = 5
MUTANTS = 20_000


def load(name: str, path: Path):
    # Inside the package, so that protocol.py's relative imports (`from . import jsonfast`) resolve.
    name = f"microadjust.{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while building the class
    spec.loader.exec_module(mod)
    return mod


def load_revision(rev: str, tmp: Path):
    text = subprocess.run(
        ["git", "show", f"{rev}:{SOURCE}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = tmp / "protocol_at_rev.py"
    path.write_text(text)
    return load("protocol_at_rev", path)


# ---------------------------------------------------------------- comparing results


def canon(x):
    """A faithful, comparable picture of a value: types, key order and float spelling included."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, tuple((f.name, canon(getattr(x, f.name))) for f in dataclasses.fields(x)))
    t = type(x)
    if t is dict:
        return ("dict", tuple((canon(k), canon(v)) for k, v in x.items()))
    if t is list:
        return ("list", tuple(canon(v) for v in x))
    if t is tuple:
        return ("tuple", tuple(canon(v) for v in x))
    if t in (str, int, float, bool) or x is None:
        return (t.__name__, repr(x))
    raise TypeError(f"unexpected {t.__name__} in a result")


def outcome(mod, text, beacon: bool = False, max_batch: int = 100):
    try:
        obj = mod.decode(text)
        if beacon:
            return ("ok", canon(mod.validate_beacon(obj, max_batch)))
        return ("ok", canon(mod.validate_client_message(obj, max_batch)))
    except mod.ProtocolError as exc:
        return ("protocol_error", exc.code, exc.path, exc.msg, exc.detail, str(exc))
    except Exception as exc:  # a crash must at least be the same crash
        return ("crash", type(exc).__name__, str(exc))


# ---------------------------------------------------------------- mutants

JUNK = [
    None, True, False, 0, 1, -1, 2, 3.0, -0.0, 0.5, 1.5, 99.99, 100, 100.5, 101, 128, 2**31,
    2**53 - 1, 2**53, 2**53 + 1, 2**63, -(2**53), 1e300, 3_600_000, 3_600_001, 1_000_000,
    1_000_001, float("nan"), float("inf"), float("-inf"), "", "x", "end", "intent", "up",
    "down", "push", "hover", "scroll", "p1", "a" * 8, "a" * 32, "a" * 33, "a" * 63, "a" * 64,
    "a" * 65, "a" * 128, "a" * 129, "a" * 256, "a" * 257, "a" * 2048, "a" * 2049, "é" * 65,
    "a b", "abc$defgh", [], [1], ["a"], [None], [[1, 2, 3]], [[1, 2]], [[-1, 0, 0]], {},
    {"a": 1}, {"k": "hover"}, {"key": "p1"}, {"a" * 65: 1}, {"a": [1]}, {"a": "b" * 257},
    ["sneakers"] * 17, ["x" * 65], [{"key": "p1"}] * 201, [[0, 0, 1]] * 201,
]
KINDS = ["hover", "scroll", "dwell", "click", "view", "custom", "engage", "read", "form", "keys",
         "pointer", "", "unknown_kind", "a" * 33, "HOVER"]
TYPES = ["events", "hello", "applied", "ping", "nope", "", "a" * 40]


def locations(x, out):
    """Every (container, key) in a message, nested ones included."""
    if type(x) is dict:
        for k, v in x.items():
            out.append((x, k))
            locations(v, out)
    elif type(x) is list:
        for i, v in enumerate(x):
            out.append((x, i))
            locations(v, out)
    return out


def mutate(rng: random.Random, msg):
    msg = copy.deepcopy(msg)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if type(msg) is not dict:
            break
        r = rng.random()
        if r < 0.05:
            msg["t"] = rng.choice(TYPES + JUNK[:6])
            continue
        if r < 0.08:
            return rng.choice(JUNK)  # not an object at all
        locs = locations(msg, [])
        if not locs:
            break
        box, key = rng.choice(locs)
        op = rng.random()
        if op < 0.25:
            del box[key]
        elif op < 0.65:
            box[key] = copy.deepcopy(rng.choice(JUNK))
        elif op < 0.75 and type(box) is dict:
            box[rng.choice(["k", "zz", "item", "slot", "el", "tags", "dur", "ms", "phase", "url",
                            "items", "via", "rage", "dead", "props", "depth", "speed", "dir"])] = (
                copy.deepcopy(rng.choice(JUNK)))
        elif op < 0.85 and key == "k" or op < 0.8:
            box[key] = rng.choice(KINDS)
        elif type(box[key]) is list and box[key]:
            box[key] = box[key] * rng.choice((2, 17, 30, 101, 201))  # past the array limits
        elif type(box[key]) in (int, float) and type(box[key]) is not bool:
            box[key] = rng.choice((box[key] * 1.0, box[key] + 0.5, -box[key], box[key] * 10**12))
        else:
            box[key] = copy.deepcopy(rng.choice(JUNK))
    return msg


def dumps(msg) -> str:
    return json.dumps(msg, allow_nan=True, ensure_ascii=rng_ascii(msg))


def rng_ascii(msg) -> bool:
    return len(str(msg)) % 2 == 0  # some frames with raw UTF-8, some with \u escapes


def broken_texts(rng: random.Random, texts: list[str]) -> list[str]:
    out = ["", " ", "null", "[]", "1", '"x"', "{", "{}", '{"t":', "{'t':'ping'}", "NaN", "Infinity",
           '{"t":"ping"', '{"t":"ping"}x', '{"t":"ping",}', "\ufeff{}", '{"t":"ping"}', "1e999",
           '{"t":"events","seq":1e999,"events":[]}', '{"t":"events","seq":18446744073709551616}',
           '{"t":"events","seq":-18446744073709551617}', '{"t":"\\ud800"}', '{"t":"events"}' * 2]
    for _ in range(300):
        t = rng.choice(texts)
        cut = rng.randrange(len(t))
        out.append(t[:cut] if rng.random() < 0.6 else t[:cut] + rng.choice('{}[],:"\\x0') + t[cut + 1:])
    return out


def compare(ref, new, texts: list[str]) -> int:
    rng = random.Random(20260101)
    vectors = []
    for name in ("valid", "invalid"):
        doc = json.loads((ROOT / "protocol" / "vectors" / "messages" / f"{name}.json").read_text())
        vectors += [v for v in doc["messages"] if v["schema"] != "server-message"]
    seeds = [(json.loads(t), False) for t in texts[:100]]
    seeds += [(v["message"], v["schema"] == "beacon") for v in vectors if "message" in v]
    cases = [(t, False) for t in texts]
    cases += [(v["frame"] if "frame" in v else json.dumps(v["message"]), v["schema"] == "beacon")
              for v in vectors]
    for _ in range(MUTANTS):
        msg, beacon = rng.choice(seeds)
        cases.append((dumps(mutate(rng, msg)), beacon))
    cases += [(t, False) for t in broken_texts(rng, texts)]
    # A few batches longer than any default limit (a server configured with --limit max_batch).
    big = {"t": "events", "seq": 7, "events": [e for t in texts[:40] for e in json.loads(t)["events"]]}
    cases += [(dumps(big), False, 1000)] + [(dumps(mutate(rng, big)), False, 1000) for _ in range(50)]
    diffs, kinds = 0, {}
    for text, beacon, *limit in cases:
        a, b = outcome(ref, text, beacon, *limit), outcome(new, text, beacon, *limit)
        kinds[a[0]] = kinds.get(a[0], 0) + 1
        if a != b:
            diffs += 1
            if diffs <= 5:
                print(f"DIFF on {text[:300]}\n  rev:  {str(a)[:300]}\n  tree: {str(b)[:300]}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"equivalence: {len(cases)} messages ({summary}): {diffs} differences")
    return diffs


# ---------------------------------------------------------------- timing


def replay(mod, texts: list[str]) -> float:
    decode, validate = mod.decode, mod.validate_client_message
    t = time.perf_counter()
    for text in texts:
        validate(decode(text), 100)
    return time.perf_counter() - t


def replay_validate(mod, objs: list) -> float:
    validate = mod.validate_client_message
    t = time.perf_counter()
    for obj in objs:
        validate(obj, 100)
    return time.perf_counter() - t


def bench(ref, new, texts: list[str]) -> None:
    objs = [json.loads(t) for t in texts]
    best = {("rev", "all"): math.inf, ("tree", "all"): math.inf,
            ("rev", "val"): math.inf, ("tree", "val"): math.inf}
    reps = max(1, 4000 // len(texts))
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for label, mod in (("rev", ref), ("tree", new)):
                best[label, "all"] = min(best[label, "all"], sum(replay(mod, texts) for _ in range(reps)))
                best[label, "val"] = min(best[label, "val"], sum(replay_validate(mod, objs) for _ in range(reps)))
    finally:
        gc.enable()
    n = len(texts) * reps
    for what, title in (("all", "decode+validate"), ("val", "validate only  ")):
        r, w = best["rev", what] / n * 1e6, best["tree", what] / n * 1e6
        print(f"{title}: rev {r:6.2f} us/msg   tree {w:6.2f} us/msg   tree/rev {w / r:.3f}")


def main(path: str, rev: str = "HEAD") -> int:
    texts = [line for line in Path(path).read_text().splitlines() if line.strip()]
    sys.path.insert(0, str(ROOT / "server"))
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_revision(rev, Path(tmp))
        new = load("protocol_in_tree", ROOT / SOURCE)
        diffs = compare(ref, new, texts)
        print(f"{len(texts)} batches, {sum(len(json.loads(t)['events']) for t in texts)} events; rev {rev}")
        bench(ref, new, texts)
    return 1 if diffs else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:3]))
