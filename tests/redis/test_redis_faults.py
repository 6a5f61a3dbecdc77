"""Redis goes away under load: writes are buffered, `ready()` turns False, nothing accepted is lost.

These tests kill -9 their own redis-server mid-stream and restart it on the same port, then count
events end to end: from the writer (as the gateway would drive the store) to a consumer group
reading the event stream.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from microadjust.redis_log import RedisEventLog
from microadjust.store.redis import REDIS_DOWN_ERRORS, RedisStore, StoreUnavailable

VID = "v_faulty_01"
SID = "s_faulty_01"
BATCH = 5


class Consumer:
    """A statistics job: reads the stream through a consumer group, surviving Redis restarts."""

    def __init__(self, url: str) -> None:
        self.log = RedisEventLog(url)
        self.seen: list[tuple[str, int]] = []
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.log.ensure_group("counter")
                while True:
                    batch = await self.log.read_group("counter", "c1", block_ms=100)
                    self.seen += [(r["sid"], r["seq"]) for _, r in batch]
                    await self.log.ack("counter", [i for i, _ in batch])
            except REDIS_DOWN_ERRORS:
                await asyncio.sleep(0.05)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen) < n:
            assert asyncio.get_running_loop().time() < deadline, (len(self.seen), n)
            await asyncio.sleep(0.02)

    def start(self) -> "Consumer":
        self.task = asyncio.get_running_loop().create_task(self.run())
        return self

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.log.close()


async def send_batch(store: RedisStore, batch_no: int) -> None:
    """What the gateway does with one batch: load, evaluate (here: count), commit, retry."""
    first = (batch_no - 1) * BATCH + 1
    evs = [{"k": "click", "ts": 1_700_000_000_000 + first + i, "seq": first + i} for i in range(BATCH)]
    while True:
        snap = await store.load(VID, SID)
        evs_new = [e for e in evs if e["seq"] > snap.ack]  # server de-duplication, PROTOCOL §3
        v = dict((snap.profile or {}).get("v") or {})
        v["clicks"] = v.get("clicks", 0) + len(evs_new)
        profile = {"v": v, "s": {"last": batch_no}}
        if await store.commit(VID, SID, snap, profile, first + BATCH - 1, 0, evs_new):
            return


def gauge(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_events_sent_while_redis_is_killed_and_restarted_all_reach_the_stream(redis_server):
    store = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05)
    consumer = Consumer(redis_server.url).start()

    for n in range(1, 21):
        await send_batch(store, n)
    # Redis runs without persistence here, so what it holds dies with it: wait until the
    # consumer has read it. (With AOF on, Redis itself would keep it; not this test's subject.)
    await consumer.wait_for(20 * BATCH)
    assert await store.ready()

    redis_server.kill()
    for n in range(21, 41):  # the page keeps sending while Redis is down: all acked
        await send_batch(store, n)
    assert not await store.ready()
    assert store.buffered_events == 20 * BATCH
    assert gauge("microadjust_write_buffer_depth") == 20 * BATCH
    # Served from memory meanwhile: the profile kept counting.
    assert (await store.load(VID, SID)).profile["v"]["clicks"] == 40 * BATCH

    redis_server.start()
    for n in range(41, 61):
        await send_batch(store, n)
    await consumer.wait_for(60 * BATCH)
    assert await store.ready()
    assert store.buffered_events == 0

    await asyncio.sleep(0.2)  # a duplicate would arrive now, if there were one
    assert len(consumer.seen) == len(set(consumer.seen)) == 60 * BATCH
    assert sorted(seq for _, seq in consumer.seen) == list(range(1, 60 * BATCH + 1))
    snap = await store.load(VID, SID)
    assert snap.ack == 60 * BATCH
    # The restarted Redis was empty; the buffered profile carried the count over, and the
    # batches after the restart were added to it.
    assert snap.profile["v"]["clicks"] == 60 * BATCH
    await consumer.stop()
    await store.close()


async def test_a_full_write_buffer_refuses_the_batch_instead_of_dropping_it(redis_server):
    store = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05, buffer_limit=2 * BATCH)
    await send_batch(store, 1)
    redis_server.kill()
    await send_batch(store, 2)
    await send_batch(store, 3)
    with pytest.raises(StoreUnavailable, match="write buffer is full"):
        await send_batch(store, 4)  # not acked: the tracker keeps it and resends later

    redis_server.start()
    deadline = asyncio.get_running_loop().time() + 10
    while not await store.ready():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await send_batch(store, 4)  # the resend
    log = RedisEventLog(redis_server.url)
    seqs = [r["seq"] for _, r in await log.read_all()]
    # Batch 1 died with the unpersisted Redis; 2 and 3 were buffered and flushed, 4 resent.
    assert seqs == list(range(BATCH + 1, 4 * BATCH + 1))
    await log.close()
    await store.close()


async def test_nothing_crashes_when_redis_is_down_from_the_start(stopped_redis):
    server = stopped_redis
    store = RedisStore(server.url, timeout=0.3, probe_interval=0.05)
    assert not await store.ready()
    await send_batch(store, 1)
    assert store.buffered_events == BATCH
    with pytest.raises(StoreUnavailable):
        await store.export_visitor(VID)
    server.start()
    deadline = asyncio.get_running_loop().time() + 10
    while not await store.ready():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert (await store.load(VID, SID)).ack == BATCH
    await store.close()


def cut_off(store: RedisStore, monkeypatch) -> asyncio.Event:
    """This store alone loses Redis (others keep it) until the returned event is set."""
    from microadjust.store import redis as rs

    real_call, back = store._call, asyncio.Event()

    async def call(op, *args, **kwargs):
        if not back.is_set():
            store._went_down(ConnectionError("this process alone lost redis"))
            raise rs._Down("cut off")
        return await real_call(op, *args, **kwargs)

    monkeypatch.setattr(store, "_call", call)
    return back


async def recovered(store: RedisStore) -> None:
    for _ in range(200):
        if not store.degraded:
            return
        await asyncio.sleep(0.02)
    assert not store.degraded


async def test_a_batch_a_cut_off_process_buffered_is_logged_though_another_process_acked_past_it(redis_server, monkeypatch):
    """Process A loses Redis (alone) and acks seq 11..15 from its write buffer; the tab moves to
    process B, whose Redis says ack 10, and stores 16..20 (ack 20). When A flushes, 11..15 must
    still reach the log: the stored ack (20) says nothing about them."""
    import redis.asyncio as aioredis

    from microadjust.store import redis as rs

    a = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05)
    b = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05)
    reader = aioredis.Redis.from_url(redis_server.url)
    try:
        await send_batch(a, 1)
        await send_batch(a, 2)  # seq 1..10 stored through A
        back = cut_off(a, monkeypatch)
        await send_batch(a, 3)  # seq 11..15: acked from A's buffer
        assert a.degraded
        await send_batch(b, 4)  # seq 16..20 through B, which stores ack 20
        back.set()
        await recovered(a)
        seqs = [r["seq"] for _id, fields in await reader.xrange(a.stream)
                for r in rs.entry_records({k.decode(): v for k, v in fields.items()})]
        assert sorted(seqs) == list(range(1, 21)), seqs
    finally:
        await a.close()
        await b.close()
        await reader.aclose()


async def test_a_redis_that_refuses_writes_for_memory_is_an_outage_not_a_bug(redis_server):
    """OOM (maxmemory reached) reads as "cannot take writes now": the batch is buffered and
    acked, /readyz turns red, and everything reaches the stream once memory is back."""
    import redis.asyncio as aioredis

    from microadjust.store import redis as rs

    store = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await send_batch(store, 1)
        await admin.config_set("maxmemory", 1)  # every write is refused with OOM from now on
        await send_batch(store, 2)  # buffered, not raised
        assert store.degraded and not await store.ready()
        await admin.config_set("maxmemory", 0)
        for _ in range(200):
            if await store.ready():
                break
            await asyncio.sleep(0.02)
        assert await store.ready()
        seqs = [r["seq"] for _id, fields in await admin.xrange(store.stream)
                for r in rs.entry_records({k.decode(): v for k, v in fields.items()})]
        assert sorted(seqs) == list(range(1, 2 * BATCH + 1)), seqs
    finally:
        await store.close()
        await admin.aclose()


async def test_an_erasure_made_while_a_process_was_cut_off_is_not_undone_by_its_flush(redis_server, monkeypatch):
    """Process A buffers a batch while it alone has lost Redis; the visitor is erased through B;
    when A flushes, nothing it buffered before the erasure comes back (keys or stream entries)."""
    import redis.asyncio as aioredis

    from microadjust.store import redis as rs

    clock = [1_000.0]
    a = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05, clock=lambda: clock[0])
    b = RedisStore(redis_server.url, timeout=0.5, probe_interval=0.05, clock=lambda: clock[0])
    reader = aioredis.Redis.from_url(redis_server.url)
    try:
        await send_batch(a, 1)
        back = cut_off(a, monkeypatch)
        await send_batch(a, 2)  # seq 6..10, buffered in A
        clock[0] += 1
        await b.erase_visitor(VID)  # through B: every key and stream entry of the visitor goes
        back.set()
        await recovered(a)
        left = [k async for k in reader.scan_iter(match=f"ma:{{{VID}}}*")]
        assert [k.decode() for k in left] == [f"ma:{{{VID}}}:x"]
        records = [r for _id, fields in await reader.xrange(a.stream)
                   for r in rs.entry_records({k.decode(): v for k, v in fields.items()})]
        assert [r for r in records if r["vid"] == VID] == []
    finally:
        await a.close()
        await b.close()
        await reader.aclose()
