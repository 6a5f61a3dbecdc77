"""Per-batch cost of the server's hot path (store load -> evaluate -> store commit), before vs after.

Loads the engine and the memory store as they were at a git revision (default HEAD) next to the
working tree's, replays the load generator's batches (bench/lib/dump_batches.mjs, same seed)
through both for several visitors, interleaved in one process so that neighbours on a shared
machine disturb both sides alike, and checks on the way that both produce byte-identical results
(canonical JSON of profile, patches, reverts, changed) for every batch.

    node bench/lib/dump_batches.mjs 400 > /tmp/batches.jsonl
    .venv/bin/python bench/experiments/hotpath_cost.py /tmp/batches.jsonl [REV]

Timings are microseconds per batch of 10 events, best of 5 rounds (least disturbed).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "server" / "microadjust" / "demo" / "rules.json"
START = 1_767_225_600_000


def canon(x) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_rev(rev: str):
    """(engine module, MemoryStore class) as they were at `rev`."""
    tmp = Path(tempfile.mkdtemp(prefix="hotpath-"))
    pkg = tmp / "engine_at_rev"
    pkg.mkdir()
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "server/microadjust/engine/"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            src = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True).stdout
            (pkg / Path(name).name).write_bytes(src)
    sys.path.insert(0, str(tmp))
    engine = importlib.import_module("engine_at_rev")
    src = subprocess.run(
        ["git", "show", f"{rev}:server/microadjust/store/memory.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader("microadjust.store.memory_at_rev", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "microadjust.store"
    sys.modules[spec.name] = mod  # dataclasses look their module up
    exec(compile(src, "memory_at_rev.py", "exec"), mod.__dict__)
    return engine, mod.MemoryStore


def run(coro):
    """Drive a coroutine that never suspends (the memory store without contention)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("coroutine suspended")


class Side:
    def __init__(self, name, engine, store_cls, rules_doc) -> None:
        self.name = name
        self.engine = engine
        self.store_cls = store_cls
        self.ruleset = engine.compile_rules(rules_doc)

    def replay(self, batches, visitors: int):
        """Each visitor gets every batch in turn (as the bench's connections do); returns results."""
        store = self.store_cls(log=None)
        evaluate, ruleset = self.engine.evaluate, self.ruleset
        out = []
        now = START
        for i, events in enumerate(batches):
            now += 500
            for v in range(visitors):
                vid, sid = f"v{v}", f"s{v}"
                snap = run(store.load(vid, sid))
                result = evaluate(snap.profile, events, now, ruleset, consent="granted")
                ok = run(store.commit(vid, sid, snap, result["profile"], events[-1]["seq"], 0, events))
                assert ok
                out.append(result)
        return out


def timed(fn, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def main(path: str, rev: str = "HEAD") -> None:
    texts = [line for line in Path(path).read_text().splitlines() if line.strip()]
    msgs = [json.loads(t) for t in texts]
    batches = [[dict(e, seq=m["seq"] + i) for i, e in enumerate(m["events"])] for m in msgs]
    rules_doc = json.loads(RULES.read_text())
    old_engine, old_store = load_rev(rev)
    from microadjust import engine as new_engine
    from microadjust.store.memory import MemoryStore

    before = Side(f"{rev}", old_engine, old_store, rules_doc)
    after = Side("working tree", new_engine, MemoryStore, rules_doc)

    # 1. Byte-identical results, batch by batch.
    a, b = before.replay(batches, 3), after.replay(batches, 3)
    keys = ("profile", "patches", "reverts", "changed")
    diffs = sum(1 for x, y in zip(a, b) if canon([x[k] for k in keys]) != canon([y[k] for k in keys]))
    print(f"{len(a)} batches compared: {diffs} differ" + ("" if diffs else " (byte-identical)"))

    # 2. Timings, interleaved.
    profile = a[-1]["profile"]
    mid = batches[len(batches) // 2]
    now = START + 500 * (len(batches) + 1)
    rows = []

    def pair(label, make):
        fb, fa = make(before), make(after)
        tb, ta = [], []
        for _ in range(3):
            tb.append(timed(fb))
            ta.append(timed(fa))
        rows.append((label, min(tb), min(ta)))

    def full(side):
        return lambda: len(side.replay(batches[:100], 4))

    def one(side):
        ev, rs = side.engine.evaluate, side.ruleset
        return lambda: [ev(profile, mid, now, rs) for _ in range(200)] and 200

    def norm(side):
        mod = importlib.import_module(side.engine.__name__ + ".profile")
        return lambda: [mod.normalise(profile) for _ in range(500)] and 500

    def store_rt(side):
        store = side.store_cls(log=None)
        run(store.commit("v", "s", run(store.load("v", "s")), profile, 1, 0, []))

        def go():
            for _ in range(500):
                snap = run(store.load("v", "s"))
                run(store.commit("v", "s", snap, profile, 1, 0, []))
            return 500
        return go

    pair("load -> evaluate -> commit, 100 batches x 4 visitors (per batch)", full)
    pair("evaluate, one batch on the grown profile", one)
    pair("engine normalise(profile)", norm)
    pair("memory store load + commit", store_rt)
    print(f"profile is {len(canon(profile))} bytes as canonical JSON")
    print(f"{'us per batch':>58}  {rev:>10}  {'now':>10}  ratio")
    for label, tb, ta in rows:
        print(f"{label:>58}  {tb:10.1f}  {ta:10.1f}  {tb / ta:5.2f}x")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:])
