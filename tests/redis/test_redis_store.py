"""RedisStore against a real redis-server and a real 3-node Redis Cluster.

Each test runs twice (`redis_url` is parametrised: single / cluster) unless it says otherwise.
"""

from __future__ import annotations

import asyncio

import pytest

from microadjust.redis_log import RedisEventLog
from microadjust.store.redis import (
    RedisStore,
    connect,
    event_index_key,
    session_key,
    sessions_key,
    visitor_key,
)


VID = "v_visitor01"
SID = "s_session01"


def events(first_seq: int, n: int, kind: str = "click") -> list[dict]:
    return [{"k": kind, "ts": 1_700_000_000_000 + i, "seq": first_seq + i, "item": f"p{i % 8}"}
            for i in range(n)]


async def wait_for(predicate, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def stream_records(url: str) -> list[dict]:
    log = RedisEventLog(url)
    try:
        return [r for _, r in await log.read_all()]
    finally:
        await log.close()


async def test_a_new_session_loads_as_an_empty_snapshot(redis_url):
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    assert snap.profile is None and snap.ack == 0 and snap.pseq == 0
    assert snap.version == (0, 0)
    await store.close()


async def test_a_commit_is_read_back_with_both_profile_parts_and_sequence_numbers(redis_url):
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    profile = {"v": {"interest": {"tag": {"running": [1.5, 10]}}}, "s": {"views": 1}}
    assert await store.commit(VID, SID, snap, profile, ack=3, pseq=1, events=events(1, 3))
    again = await store.load(VID, SID)
    assert again.profile == profile
    assert (again.ack, again.pseq) == (3, 1)
    assert again.version == (1, 1)
    # A second tab of the same visitor shares the visitor part, not the session part.
    other = await store.load(VID, "s_session02")
    assert other.profile == {"v": profile["v"], "s": None}
    assert (other.ack, other.pseq) == (0, 0)
    await store.close()


async def test_a_commit_based_on_a_stale_snapshot_is_refused_and_changes_nothing(redis_url):
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    assert await store.commit(VID, SID, snap, {"v": {"n": 1}, "s": {}}, 1, 0, events(1, 1))
    # Same (now stale) snapshot again: the versions moved on, so this must be a conflict.
    assert not await store.commit(VID, SID, snap, {"v": {"n": 99}, "s": {}}, 2, 0, events(2, 1))
    now = await store.load(VID, SID)
    assert now.profile["v"] == {"n": 1} and now.ack == 1
    assert len(await stream_records(redis_url)) == 1 or store.cluster
    await store.close()


def merge_batch(profile, tab: str, batch_no: int) -> dict:
    """A deterministic stand-in for the engine: counts batches per tab in the visitor part."""
    v = dict((profile or {}).get("v") or {})
    v[tab] = v.get(tab, 0) + 1
    v["total"] = v.get("total", 0) + 1
    s = {"batches": batch_no}
    return {"v": v, "s": s}


async def test_two_tabs_on_two_processes_never_lose_a_visitor_update(redis_url):
    """Two stores (as two server processes) write the same visitor concurrently, with retries."""
    stores = [RedisStore(redis_url), RedisStore(redis_url)]
    batches = 40

    async def tab(store: RedisStore, name: str, sid: str):
        conflicts = 0
        for n in range(1, batches + 1):
            while True:
                snap = await store.load(VID, sid)
                new = merge_batch(snap.profile, name, n)
                if await store.commit(VID, sid, snap, new, ack=n, pseq=0, events=events(n, 1)):
                    break
                conflicts += 1
        return conflicts

    await asyncio.gather(tab(stores[0], "a", "s_tab_a_01"), tab(stores[1], "b", "s_tab_b_01"))
    # What Redis holds, read by a third process (each writer may serve its own loads from the
    # state it last committed; the compare-and-set is what keeps every update).
    reader = RedisStore(redis_url)
    final = await reader.load(VID, "s_tab_a_01")
    assert final.profile["v"] == {"a": batches, "b": batches, "total": 2 * batches}
    for s in (*stores, reader):
        await s.close()


async def test_a_session_s_next_load_comes_from_its_own_commit_without_a_round_trip(redis_url):
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    assert await store.commit(VID, SID, snap, {"v": {"n": 1}, "s": {"k": 1}}, 1, 0, events(1, 1))
    hits = store.cache_hits
    again = await store.load(VID, SID)
    assert store.cache_hits == hits + 1
    assert again.profile == {"v": {"n": 1}, "s": {"k": 1}} and again.ack == 1
    # Another process writes the visitor; this one's cached load is stale, so its commit fails,
    # and the retry reads what the other wrote.
    other = RedisStore(redis_url)
    osnap = await other.load(VID, "s_other_tab1")
    assert await other.commit(VID, "s_other_tab1", osnap, {"v": {"n": 2}, "s": {}}, 1, 0, events(1, 1))
    stale = await store.load(VID, SID)
    assert not await store.commit(VID, SID, stale, {"v": {"n": 99}, "s": {"k": 2}}, 2, 0, events(2, 1))
    fresh = await store.load(VID, SID)
    assert fresh.profile["v"] == {"n": 2}
    # A nudge from the other process drops the cache before any re-evaluation.
    assert await store.commit(VID, SID, fresh, {"v": {"n": 3}, "s": {"k": 2}}, 2, 0, events(2, 1))
    # `other` cached its own last commit, so its first try is refused too, and its retry lands.
    assert not await other.commit(VID, "s_other_tab1", await other.load(VID, "s_other_tab1"), {"v": {"n": 4}, "s": {}}, 2, 0, events(2, 1))
    assert await other.commit(VID, "s_other_tab1", await other.load(VID, "s_other_tab1"), {"v": {"n": 4}, "s": {}}, 2, 0, events(2, 1))
    store.invalidate_visitor(VID)
    assert (await store.load(VID, SID)).profile["v"] == {"n": 4}
    await store.close()
    await other.close()


async def test_the_cache_keeps_bytes_and_every_load_is_its_caller_s_own_copy(redis_url):
    # Cached profile parts as objects were thousands of dicts and lists per 1,000 sessions for
    # the garbage collector to walk; the cache keeps the JSON the commit sent instead.
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    profile = {"v": {"interest": {"p1": [1.5, 1_700_000_000_000]}}, "s": {"page": {"url": "/shop"}}}
    assert await store.commit(VID, SID, snap, profile, 1, 0, events(1, 1))
    cached = store._scache[(VID, SID)]
    assert type(cached.profile) is bytes and type(store._vcache[VID].profile) is bytes
    first, second = await store.load(VID, SID), await store.load(VID, SID)
    assert first.profile == second.profile == profile
    first.profile["v"]["interest"]["p1"][0] = 99.0  # the caller's own copy
    assert (await store.load(VID, SID)).profile == profile
    await store.close()


class _Part(dict):
    """A profile part that can be watched with a weak reference."""


async def test_a_commit_keeps_no_profile_object_across_its_round_trip(redis_url):
    # Serialised before the round trip, the profile's objects need not live while it lasts:
    # with every socket's batch in flight, they were most of what the collector walked.
    import weakref

    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    part = _Part(n=1)
    watched = weakref.ref(part)
    real, gate, inside = store._call, asyncio.Event(), asyncio.Event()

    async def slow(*args, **kwargs):
        inside.set()
        await gate.wait()
        return await real(*args, **kwargs)

    store._call = slow
    task = asyncio.ensure_future(store.commit(VID, SID, snap, {"v": part, "s": {}}, 1, 0, events(1, 1)))
    del part
    await inside.wait()
    assert watched() is None
    gate.set()
    assert await task
    assert (await store.load(VID, SID)).profile == {"v": {"n": 1}, "s": {}}
    await store.close()


async def test_accepted_events_reach_the_stream_exactly_once_with_who_and_when(redis_url):
    store = RedisStore(redis_url, clock=lambda: 1_800_000_000.0)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 5, 0, events(1, 5))
    records = await wait_for(lambda: _n_records(redis_url, 5))
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert all(r["vid"] == VID and r["sid"] == SID and r["at"] == 1_800_000_000_000 for r in records)
    assert records[0]["k"] == "click" and records[0]["item"] == "p0"
    await store.close()


async def _n_records(url, n):
    records = await stream_records(url)
    return records if len(records) >= n else None


async def test_every_key_of_a_visitor_shares_one_cluster_slot_and_expires_after_inactivity(redis_url):
    store = RedisStore(redis_url, retention_s=60)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 2, 0, events(1, 2))
    client = connect(redis_url)
    keys = [visitor_key(VID), session_key(VID, SID), sessions_key(VID), event_index_key(VID)]
    if store.cluster:
        await wait_for(lambda: _n_records(redis_url, 2))
        slots = {await client.cluster_keyslot(k) for k in keys}
        assert len(slots) == 1
    for key in keys:
        ttl = await client.pttl(key)
        assert 55_000 < ttl <= 60_000, (key, ttl)
    await client.aclose()
    await store.close()


async def test_a_batch_is_one_stream_entry_whose_records_share_its_id(redis_url):
    store = RedisStore(redis_url, clock=lambda: 1_800_000_000.0)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 4, 0, events(1, 4))
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 6, 0, events(5, 2))
    await wait_for(lambda: _n_records(redis_url, 6))
    log = RedisEventLog(redis_url)
    assert await log.length() == 2  # entries: one per batch
    await log.ensure_group("jobs")
    got = await log.read_group("jobs", "c1", count=10, block_ms=None)
    assert [r["seq"] for _, r in got] == [1, 2, 3, 4, 5, 6]
    ids = [i for i, _ in got]
    assert len(set(ids)) == 2 and ids[0] == ids[3] and ids[4] == ids[5] and ids[0] != ids[4]
    assert await log.ack("jobs", ids) == 2  # repeated ids are acked once
    assert await log.read_group("jobs", "c1", block_ms=None) == []
    # An entry read but not acked is claimed whole by another consumer.
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 9, 0, events(7, 3))
    await wait_for(lambda: _n_records(redis_url, 9))
    assert len(await log.read_group("jobs", "c1", block_ms=None)) == 3
    claimed = await log.claim_stale("jobs", "c2", min_idle_ms=0)
    assert [r["seq"] for _, r in claimed] == [7, 8, 9]
    await log.close()
    await store.close()


async def test_entries_of_one_event_each_written_by_earlier_versions_are_still_read(redis_url):
    client = connect(redis_url)
    old = {"vid": VID, "sid": SID, "at": 1, "k": "click", "ts": 2, "seq": 1}
    await client.xadd("ma:events", {"e": '{"vid":"%s","sid":"%s","at":1,"k":"click","ts":2,"seq":1}' % (VID, SID)})
    store = RedisStore(redis_url, clock=lambda: 0.005)
    snap = await store.load(VID, "s_session09")
    await store.commit(VID, "s_session09", snap, {"v": {}, "s": {}}, 1, 0, events(1, 1))
    records = await wait_for(lambda: _n_records(redis_url, 2))
    assert records[0] == old and records[1]["sid"] == "s_session09" and records[1]["at"] == 5
    await client.aclose()
    await store.close()


async def test_ttls_are_set_on_creation_and_refreshed_when_due_not_on_every_batch(redis_url):
    store = RedisStore(redis_url, retention_s=100)  # refresh due every second
    assert store.refresh_s == 1.0
    client = connect(redis_url)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 0, 0, [])  # no events: no index yet
    first = await client.pttl(session_key(VID, SID))
    assert 99_000 < first <= 100_000
    await asyncio.sleep(0.3)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 2, 0, events(1, 2))
    if store.cluster:
        await wait_for(lambda: _n_records(redis_url, 2))
    # Not due: the session's TTL ran on; the event index, created now, got its TTL anyway.
    assert await client.pttl(session_key(VID, SID)) < first - 200
    assert 99_000 < await client.pttl(event_index_key(VID)) <= 100_000
    # A second tab's first batch creates its session key and joins the session set.
    other = "s_session02"
    snap = await store.load(VID, other)
    await store.commit(VID, other, snap, {"v": {}, "s": {}}, 0, 0, [])
    assert 99_000 < await client.pttl(session_key(VID, other)) <= 100_000
    assert await client.smembers(sessions_key(VID)) == {SID, other}
    await asyncio.sleep(0.8)
    snap = await store.load(VID, SID)
    await store.commit(VID, SID, snap, {"v": {}, "s": {}}, 3, 0, events(3, 1))
    for key in (visitor_key(VID), session_key(VID, SID), sessions_key(VID), event_index_key(VID)):
        assert 99_000 < await client.pttl(key) <= 100_000, key  # due again: all refreshed
    await client.aclose()
    await store.close()


async def test_an_active_visitor_outlives_the_retention_and_an_idle_one_does_not(redis_url):
    store = RedisStore(redis_url, retention_s=1)
    client = connect(redis_url)
    keys = [visitor_key(VID), session_key(VID, SID), sessions_key(VID), event_index_key(VID)]
    seq = 0
    started = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - started < 1.6:
        snap = await store.load(VID, SID)
        seq += 1
        await store.commit(VID, SID, snap, {"v": {"n": seq}, "s": {}}, seq, 0, events(seq, 1))
        await asyncio.sleep(0.05)
    if store.cluster:
        await wait_for(lambda: _n_records(redis_url, seq))
    assert all([await client.exists(k) for k in keys])
    await asyncio.sleep(1.2)
    assert not any([await client.exists(k) for k in keys])
    await client.aclose()
    await store.close()


async def test_export_returns_everything_and_erasure_removes_it_including_logged_events(redis_url):
    store = RedisStore(redis_url)
    other = "v_someone_else"
    for vid in (VID, other):
        snap = await store.load(vid, SID)
        await store.commit(vid, SID, snap, {"v": {"who": vid}, "s": {"x": 1}}, 3, 2, events(1, 3))
    await wait_for(lambda: _n_records(redis_url, 6))

    exported = await store.export_visitor(VID)
    assert exported["profile"] == {"who": VID}
    assert exported["sessions"][0]["sid"] == SID and exported["sessions"][0]["ack"] == 3
    assert [e["seq"] for e in exported["events"]] == [1, 2, 3]
    assert all(e["vid"] == VID for e in exported["events"])

    await store.erase_visitor(VID)
    assert (await store.load(VID, SID)).profile is None
    assert (await store.export_visitor(VID))["events"] == []
    remaining = await stream_records(redis_url)
    assert {r["vid"] for r in remaining} == {other} and len(remaining) == 3
    client = connect(redis_url)
    if not store.cluster:  # a SCAN of one node is the whole keyspace only on a single Redis
        left = [k async for k in client.scan_iter(match="ma:{v_visitor01}*")]
        # Only the tombstone: when the erasure ran (ms), nothing else, for a week (a process cut
        # off from Redis meanwhile must not write back what it buffered before it).
        assert left == ["ma:{v_visitor01}:x"]
        assert (await client.get(left[0])).isdigit()
        assert 0 < await client.pttl(left[0]) <= 7 * 24 * 3600 * 1000
    await client.aclose()
    await store.close()


async def test_bad_ids_are_refused_before_they_become_key_names(redis_url):
    store = RedisStore(redis_url)
    with pytest.raises(ValueError, match="visitor id"):
        await store.load("evil}:x", SID)
    await store.close()


def test_bad_urls_get_a_clear_error():
    with pytest.raises(ValueError, match="unsupported Redis URL scheme"):
        RedisStore("http://127.0.0.1:6379")


async def test_two_tabs_on_two_processes_with_the_real_engine_keep_every_click(redis_url):
    """Each process runs load -> evaluate -> commit, retrying on conflict, like the gateway."""
    import json
    from pathlib import Path

    from microadjust.engine import compile_rules, evaluate

    rules = compile_rules(json.loads(
        (Path(__file__).parents[2] / "server/microadjust/demo/rules.json").read_text()))
    now = 1_700_000_000_000  # one clock for every batch: decayed sums then add up exactly
    stores = [RedisStore(redis_url), RedisStore(redis_url)]
    batches = 25

    async def tab(store: RedisStore, sid: str):
        for seq in range(1, batches + 1):
            batch = [{"k": "click", "ts": now, "seq": seq, "item": "p1", "tags": ["running"]}]
            while True:
                snap = await store.load(VID, sid)
                result = evaluate(snap.profile, batch, now, rules)
                if await store.commit(VID, sid, snap, result["profile"], seq,
                                      snap.pseq + len(result["patches"]), batch):
                    break

    await asyncio.gather(tab(stores[0], "s_tab_a_01"), tab(stores[1], "s_tab_b_01"))

    serial = None
    for seq in range(1, 2 * batches + 1):
        batch = [{"k": "click", "ts": now, "seq": seq, "item": "p1", "tags": ["running"]}]
        serial = evaluate(serial, batch, now, rules)["profile"]
    reader = RedisStore(redis_url)  # what Redis holds (a writer may load its own last commit)
    stored = (await reader.load(VID, "s_tab_a_01")).profile
    assert stored["v"]["interest"] == serial["v"]["interest"]
    for s in (*stores, reader):
        await s.close()


def test_an_outbox_never_outlives_the_retention_so_an_erasure_can_find_it():
    """Outboxes are found by the erasure through the session set, which expires with the
    retention: with a retention under the outbox's hour, the outbox gets the retention."""
    from microadjust.app import create_app
    from microadjust.settings import Settings

    def outbox_ttl_ms(retention_s):
        settings = Settings(port=0, sites={"demo": ["http://x.test"]}, redis_url="redis://127.0.0.1:1/0",
                            retention_s=retention_s)
        return create_app(settings).state.bus.outbox_ttl_ms  # nothing connects before start-up

    assert outbox_ttl_ms(600) == 600_000
    assert outbox_ttl_ms(30 * 24 * 3600) == 3600 * 1000
