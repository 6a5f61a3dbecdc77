"""The embedded store's memory is bounded: retention, a visitor cap and a per-visitor session cap.

The clock is injected, so "30 days later" is a number, not a wait.
"""

from __future__ import annotations

import pytest

from microadjust import metrics
from microadjust.store.memory import MemoryStore

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


def evictions(what: str, reason: str) -> float:
    return metrics.STORE_EVICTIONS.labels(what, reason)._value.get()


async def batch(store: MemoryStore, vid: str, sid: str, n: int = 1) -> None:
    """One accepted batch: load, change both parts, commit (as Ingest does)."""
    snap = await store.load(vid, sid)
    profile = snap.profile or {"v": None, "s": None}
    v, s = profile["v"] or {"n": 0}, profile["s"] or {"n": 0}
    profile = {"v": {"n": v["n"] + n}, "s": {"n": s["n"] + n}}
    assert await store.commit(vid, sid, snap, profile, snap.ack + 1, snap.pseq, [{"k": "click", "ts": 1, "seq": snap.ack + 1}])


async def held(store: MemoryStore, vid: str, sid: str) -> bool:
    return (await store.load(vid, sid)).profile is not None


async def test_a_visitor_idle_longer_than_the_retention_is_dropped_with_its_sessions():
    clock = Clock()
    store = MemoryStore(clock=clock, retention_s=30 * DAY)
    before = evictions("visitor", "retention")
    await batch(store, "v_idle_one", "s_idle_one")
    clock.now += 30 * DAY + 1
    await batch(store, "v_active_one", "s_active_one")  # any commit sweeps the idle end
    assert not await held(store, "v_idle_one", "s_idle_one")
    assert (await store.export_visitor("v_idle_one")) == {"vid": "v_idle_one", "profile": None, "sessions": {}, "events": []}
    assert await held(store, "v_active_one", "s_active_one")
    assert len(store) == 1 and evictions("visitor", "retention") == before + 1


async def test_an_active_visitor_outlives_the_retention_and_an_idle_one_does_not():
    clock = Clock()
    store = MemoryStore(clock=clock, retention_s=10 * DAY)
    await batch(store, "v_regular1", "s_regular1")
    await batch(store, "v_oneoff01", "s_oneoff01")
    for _ in range(3):  # the regular comes back every 9 days: 27 days in all
        clock.now += 9 * DAY
        await batch(store, "v_regular1", "s_regular1")
    assert await held(store, "v_regular1", "s_regular1")
    assert (await store.load("v_regular1", "s_regular1")).profile["v"] == {"n": 4}
    assert not await held(store, "v_oneoff01", "s_oneoff01")


async def test_beyond_the_visitor_cap_the_least_recently_active_go_first():
    store = MemoryStore(clock=Clock(), max_visitors=3)
    before = evictions("visitor", "capacity")
    for i in range(3):
        await batch(store, f"v_visitor{i}", f"s_session{i}")
    await batch(store, "v_visitor0", "s_session0")  # visitor 0 is now the most recent
    await batch(store, "v_visitor3", "s_session3")
    await batch(store, "v_visitor4", "s_session4")
    kept = [i for i in range(5) if await held(store, f"v_visitor{i}", f"s_session{i}")]
    assert kept == [0, 3, 4]
    assert len(store) == 3 and evictions("visitor", "capacity") == before + 2
    assert (await store.load("v_visitor0", "s_session0")).ack == 2  # kept whole, ack included


async def test_a_visitor_keeps_its_most_recent_sessions_and_its_visitor_part():
    store = MemoryStore(clock=Clock(), max_sessions_per_visitor=2)
    before = evictions("session", "capacity")
    await batch(store, "v_many_tabs", "s_tab_one1")
    await batch(store, "v_many_tabs", "s_tab_two2")
    await batch(store, "v_many_tabs", "s_tab_one1")  # tab one is the most recent again
    await batch(store, "v_many_tabs", "s_tab_three")
    export = await store.export_visitor("v_many_tabs")
    assert sorted(export["sessions"]) == ["s_tab_one1", "s_tab_three"]
    assert export["profile"] == {"n": 4}  # the visitor part saw all four batches
    assert evictions("session", "capacity") == before + 1
    assert store.session_counts() == {"s_tab_one1": 2, "s_tab_three": 1}


async def test_an_old_session_past_the_retention_goes_when_the_visitor_opens_a_new_one():
    clock = Clock()
    store = MemoryStore(clock=clock, retention_s=7 * DAY)
    await batch(store, "v_returning", "s_first_visit")
    clock.now += 5 * DAY
    await batch(store, "v_returning", "s_second_visit")
    clock.now += 5 * DAY  # the first session is 10 days old, the visitor only 5 days idle
    await batch(store, "v_returning", "s_third_visit")
    export = await store.export_visitor("v_returning")
    assert sorted(export["sessions"]) == ["s_second_visit", "s_third_visit"]
    assert export["profile"] == {"n": 3}


async def test_a_snapshot_read_before_its_visitor_was_dropped_cannot_commit_over_the_drop():
    store = MemoryStore(clock=Clock(), max_visitors=1)
    await batch(store, "v_dropped1", "s_dropped1")
    stale = await store.load("v_dropped1", "s_dropped1")  # version (1, 1)
    await batch(store, "v_newcomer", "s_newcomer")  # the cap drops v_dropped1
    assert not await store.commit("v_dropped1", "s_dropped1", stale, {"v": {"n": 9}, "s": {}}, 2, 0, [])
    fresh = await store.load("v_dropped1", "s_dropped1")  # what Ingest does next: reload, evaluate
    assert fresh.profile is None and fresh.version == (0, 0) and fresh.ack == 0
    await batch(store, "v_dropped1", "s_dropped1")
    assert (await store.load("v_dropped1", "s_dropped1")).profile["v"] == {"n": 1}


@pytest.mark.parametrize("name", ["retention_s", "max_visitors", "max_sessions_per_visitor"])
def test_limits_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        MemoryStore(**{name: 0})
