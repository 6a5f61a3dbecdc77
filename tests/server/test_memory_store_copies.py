"""The memory store keeps profiles serialised (store/memory.py): what it hands out is the
caller's own, and nothing a caller does to a snapshot or to a committed profile reaches it.

These tests drive the real engine with the demo rules through the store and check that nothing
handed out or stored earlier changes when later batches are committed, for one session and for
two tabs sharing the visitor part, and that a caller changing what it holds changes nothing stored.
"""

from __future__ import annotations

import json
from pathlib import Path

from microadjust.engine import compile_rules, evaluate
from microadjust.store.memory import MemoryStore

RULES = compile_rules(json.loads((Path(__file__).resolve().parents[2] / "server" / "microadjust" / "demo" / "rules.json").read_text()))
NOW = 1_767_225_600_000
VIEW = {"k": "view", "ts": 1, "url": "/", "items": [{"key": f"p{i}", "tags": ["watches", "luxury"] if i % 2 else ["sneakers"]} for i in range(1, 9)]}


def canon(x) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def batch(n: int) -> list[dict]:
    """Batch n: a view first, then hovers, dwells, scrolls and clicks that touch every profile part."""
    events = [VIEW] if n == 0 else []
    item = f"p{n % 8 + 1}"
    events += [
        {"k": "hover", "ts": 2, "item": item, "phase": "intent", "dur": 2100},
        {"k": "dwell", "ts": 3, "item": item, "ms": 6000},
        {"k": "scroll", "ts": 4, "depth": min(100, 10 * n), "speed": 300 + 100 * n, "dir": "down"},
        {"k": "click", "ts": 5, "item": item},
        {"k": "custom", "ts": 6, "name": "add_to_cart", "props": {"item": item}},
    ]
    return [dict(e, seq=10 * n + i + 1) for i, e in enumerate(events)]


async def run_batch(store: MemoryStore, vid: str, sid: str, n: int):
    snap = await store.load(vid, sid)
    events = batch(n)
    result = evaluate(snap.profile, events, NOW + 7_000 * n, RULES)
    assert await store.commit(vid, sid, snap, result["profile"], events[-1]["seq"], 0, events)
    return snap, result


async def test_a_loaded_snapshot_is_not_changed_by_later_batches():
    store = MemoryStore()
    seen = []  # (object handed out or stored, its canonical JSON at the time)
    patches = 0
    for n in range(12):
        snap, result = await run_batch(store, "v_visitor1", "s_session1", n)
        if snap.profile is not None:
            seen.append((snap.profile, canon(snap.profile)))
        seen.append((result["profile"], canon(result["profile"])))
        patches += len(result["patches"])
    assert patches  # the batches did fire rules, so guard state was written too
    for obj, text in seen:
        assert canon(obj) == text
    loaded = await store.load("v_visitor1", "s_session1")
    assert canon(loaded.profile) == seen[-1][1]  # the last commit, as committed


async def test_snapshots_are_the_callers_own_and_commits_keep_no_reference():
    store = MemoryStore()
    _, first = await run_batch(store, "v_visitor1", "s_session1", 0)
    committed = canon(first["profile"])
    first["profile"]["v"]["recent"].clear()  # the caller changes what it committed
    snap = await store.load("v_visitor1", "s_session1")
    assert canon(snap.profile) == committed
    again = await store.load("v_visitor1", "s_session1")
    assert again.profile is not snap.profile and again.profile["s"] is not snap.profile["s"]
    snap.profile["s"]["page"]["items"].clear()  # and what it loaded
    assert canon((await store.load("v_visitor1", "s_session1")).profile) == committed
    _, second = await run_batch(store, "v_visitor1", "s_session1", 1)
    assert canon((await store.load("v_visitor1", "s_session1")).profile) == canon(second["profile"])


async def test_a_stored_part_is_compact_bytes():
    store = MemoryStore()
    await run_batch(store, "v_visitor1", "s_session1", 0)
    part = store._visitors["v_visitor1"].sessions["s_session1"].profile
    assert type(part) is bytes and json.loads(part)["views"] == 1
    # orjson's own bytes keep an 8 KB+ buffer whatever their length; the store keeps a copy
    # of the exact length (tracemalloc sees what is allocated, not just the length).
    import tracemalloc

    tracemalloc.start()
    try:
        await run_batch(store, "v_visitor2", "s_session2", 0)
        held = sum(stat.size for stat in tracemalloc.take_snapshot().statistics("filename")
                   if stat.traceback[0].filename.endswith(("memory.py", "jsonfast.py")))
    finally:
        tracemalloc.stop()
    assert held < 4096, held


async def test_two_tabs_sharing_the_visitor_part_never_change_each_others_stored_state():
    store = MemoryStore()
    texts = []
    for n in range(8):
        for sid in ("s_tab_one1", "s_tab_two2"):
            snap, result = await run_batch(store, "v_visitor1", sid, n)
            texts.append((snap.profile, canon(snap.profile)))
            texts.append((result["profile"], canon(result["profile"])))
    for obj, text in texts:
        assert canon(obj) == text
    one = await store.load("v_visitor1", "s_tab_one1")
    two = await store.load("v_visitor1", "s_tab_two2")
    assert one.profile["v"] == two.profile["v"]  # one visitor part, as committed last
    assert one.profile["s"]["views"] == 1 and two.profile["s"]["views"] == 1


async def test_export_visitor_returns_copies_the_caller_may_change():
    store = MemoryStore()
    await run_batch(store, "v_visitor1", "s_session1", 0)
    exported = await store.export_visitor("v_visitor1")
    exported["profile"]["recent"].clear()
    exported["sessions"]["s_session1"]["profile"]["page"]["items"].clear()
    loaded = await store.load("v_visitor1", "s_session1")
    assert loaded.profile["v"]["recent"] and loaded.profile["s"]["page"]["items"]


def _reference_normalise(profile):
    """normalise() as it was before the no-copy fast path: a deep copy, then defaults filled in."""
    from microadjust.engine.profile import _fill, copy_json, new_profile, new_session, new_visitor

    if not profile:
        return new_profile()
    work = copy_json(profile)
    if not isinstance(work, dict):
        return new_profile()
    work["v"] = _fill(new_visitor(), work.get("v"))
    work["s"] = _fill(new_session(), work.get("s"))
    return work


def _paths(x, prefix=()):
    if isinstance(x, dict):
        for k, v in x.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


async def test_the_engine_leaves_stored_profiles_alone_whatever_their_shape():
    # The engine never changes its input (the Redis store's cache hands it the objects it keeps):
    # it copies only what it changes when a profile is well formed and deep-copies anything
    # else; either way the profile given does not move, and the result is what the deep-copy
    # path gives. Every part of a grown profile
    # is removed or given a wrong type in turn.
    from microadjust.engine.profile import copy_json, normalise

    store = MemoryStore()
    for n in range(6):
        await run_batch(store, "v_visitor1", "s_session1", n)
    grown = (await store.load("v_visitor1", "s_session1")).profile
    variants = [grown]
    for path in _paths(grown):
        if len(path) > 3:
            continue
        for value in ("drop", None, True, 7, 1.5, "x", [], {}):
            variant = copy_json(grown)
            parent = variant
            for key in path[:-1]:
                parent = parent[key]
            if value == "drop":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            variants.append(variant)
    for variant in variants:
        before = canon(variant)
        assert canon(normalise(variant)) == canon(_reference_normalise(variant))
        try:
            result = evaluate(variant, batch(7), NOW + 60_000, RULES)
        except (TypeError, KeyError, AttributeError, ValueError):
            reference_raised = False
            try:
                evaluate(_reference_normalise(variant), batch(7), NOW + 60_000, RULES)
            except (TypeError, KeyError, AttributeError, ValueError):
                reference_raised = True
            assert reference_raised
        else:
            assert canon(result) == canon(evaluate(_reference_normalise(variant), batch(7), NOW + 60_000, RULES))
        assert canon(variant) == before
