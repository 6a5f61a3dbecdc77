"""RedisBus: presence, cross-process patches, resume outbox, config documents.

Two `RedisBus` objects with different process ids stand for two server processes sharing Redis.
Every test runs against one redis-server and against a 3-node cluster.
"""

from __future__ import annotations

import asyncio

import pytest

from microadjust.redis_bus import RedisBus
from microadjust.store.redis import RedisStore

VID = "v_bus_visitor"
SID = "s_bus_session"


class Inbox:
    """Collects bus callbacks so a test can wait for them."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self.arrived = asyncio.Event()

    def __call__(self, *args) -> None:
        self.items.append(args)
        self.arrived.set()

    async def wait(self, n: int = 1, timeout: float = 3.0) -> list[tuple]:
        async def enough():
            while len(self.items) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.items


@pytest.fixture
async def two_processes(redis_url):
    a = RedisBus(redis_url, process_id="proc-a", presence_ttl_s=1.5, doc_poll_s=0.2)
    b = RedisBus(redis_url, process_id="proc-b", presence_ttl_s=1.5, doc_poll_s=0.2)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


def patch(pseq: int) -> dict:
    return {"t": "patch", "pseq": pseq, "patch": {"id": f"r:{pseq}", "rule": "r",
            "target": {"slot": "cta"}, "ops": [{"op": "addClass", "class": "x"}],
            "ttl": 0, "priority": 1, "cause": pseq}}


async def set_session_pseq(redis_url: str, pseq: int) -> None:
    """What the gateway's commit does before it publishes: store the session's pseq."""
    store = RedisStore(redis_url)
    snap = await store.load(VID, SID)
    assert await store.commit(VID, SID, snap, {"v": {}, "s": {}}, snap.ack, pseq, [])
    await store.close()


async def test_presence_lists_the_processes_holding_a_visitor_until_they_leave(two_processes):
    a, b = two_processes
    await a.join(VID)
    await b.join(VID)
    await b.join(VID)  # a second tab on b
    assert await a.present(VID) == ["proc-a", "proc-b"]
    await b.leave(VID)
    assert await a.present(VID) == ["proc-a", "proc-b"]  # b still has one socket
    await b.leave(VID)
    assert await a.present(VID) == ["proc-a"]


async def test_presence_of_a_crashed_process_expires_and_a_live_one_is_refreshed(redis_url):
    live = RedisBus(redis_url, process_id="proc-live", presence_ttl_s=0.6)
    crashed = RedisBus(redis_url, process_id="proc-crashed", presence_ttl_s=0.6)
    await live.start()
    await crashed.start()
    await live.join(VID)
    await crashed.join(VID)
    for task in crashed._tasks:  # dies without leaving: no refresh, no HDEL
        task.cancel()
    await asyncio.sleep(1.0)
    assert await live.present(VID) == ["proc-live"]
    await live.close()
    await crashed.client.aclose()


async def test_a_patch_published_on_one_process_reaches_the_session_on_another(two_processes):
    a, b = two_processes
    inbox = Inbox()
    b.on_messages = inbox
    assert await a.publish(VID, SID, [patch(1)]) == 0  # nobody else holds the visitor yet
    await b.join(VID)
    assert await a.publish(VID, SID, [patch(2)]) == 1
    [(vid, sid, msgs)] = await inbox.wait(1)
    assert (vid, sid) == (VID, SID) and msgs == [patch(2)]


async def test_a_visitor_change_nudges_the_other_processes_holding_the_visitor(two_processes):
    a, b = two_processes
    nudged = Inbox()
    b.on_nudge = nudged
    await a.join(VID)
    await b.join(VID)
    assert await a.nudge(VID) == 1
    assert await nudged.wait(1) == [(VID,)]


async def test_resume_before_any_patch_is_complete_and_empty(two_processes):
    a, _ = two_processes
    result = await a.resume(VID, SID, 0)
    assert result.messages == [] and result.complete and result.pseq == 0


async def test_resume_after_many_patches_on_another_process(two_processes, redis_url):
    a, b = two_processes  # the outbox keeps 64 messages
    for pseq in range(1, 101):
        await a.publish(VID, SID, [patch(pseq)])
    await set_session_pseq(redis_url, 100)

    recent = await b.resume(VID, SID, 90)
    assert [m["pseq"] for m in recent.messages] == list(range(91, 101))
    assert recent.complete and recent.pseq == 100

    up_to_date = await b.resume(VID, SID, 100)
    assert up_to_date.messages == [] and up_to_date.complete

    too_old = await b.resume(VID, SID, 5)  # 6..36 were trimmed from the bounded outbox
    assert [m["pseq"] for m in too_old.messages] == list(range(37, 101))
    assert not too_old.complete


async def test_resume_with_a_pseq_the_server_never_issued_is_not_complete(two_processes):
    a, _ = two_processes  # e.g. the session expired or the visitor was erased meanwhile
    result = await a.resume(VID, SID, 7)
    assert result.messages == [] and not result.complete


async def test_resume_reports_a_gap_when_a_committed_patch_never_reached_the_outbox(two_processes, redis_url):
    a, _ = two_processes
    await a.publish(VID, SID, [patch(1), patch(2)])
    await set_session_pseq(redis_url, 3)  # pseq 3 committed, its publish lost (process died)
    result = await a.resume(VID, SID, 0)
    assert [m["pseq"] for m in result.messages] == [1, 2]
    assert not result.complete and result.pseq == 3


async def test_a_rules_change_through_one_process_reaches_the_other_within_a_second(two_processes):
    a, b = two_processes
    changed = Inbox()
    b.on_change = changed
    b.watch("rules")
    doc = {"rules": [{"id": "r1"}]}
    version = await a.put_document("rules", doc)
    assert await changed.wait(1, timeout=1.0) == [("rules", doc)]
    assert await b.get_document("rules") == (doc, version)


async def test_a_change_whose_announcement_was_lost_is_found_by_polling(two_processes):
    a, b = two_processes
    changed = Inbox()
    b.on_change = changed
    b.watch("experiments")
    # Written behind the bus's back: no pub/sub message, as if it had been lost.
    await a._set_doc(keys=["ma:doc:experiments"], args=['{"exps": []}', 0])
    assert await changed.wait(1, timeout=1.0) == [("experiments", {"exps": []})]


async def test_an_erasure_is_announced_to_every_other_process(two_processes):
    a, b = two_processes
    erased = Inbox()
    b.on_erase = erased
    await a.publish_erase(VID)
    assert await erased.wait(1) == [(VID,)]


async def test_with_redis_down_the_bus_degrades_instead_of_raising(stopped_redis):
    bus = RedisBus(stopped_redis.url, process_id="proc-alone")
    await bus.join(VID)  # presence is retried by the refresher once Redis is back
    assert await bus.publish(VID, SID, [patch(1)]) == 0
    assert await bus.nudge(VID) == 0
    result = await bus.resume(VID, SID, 3)
    assert result.messages == [] and not result.complete and result.pseq == 3
    await bus.close()


async def test_redis_mode_erasure_reaches_the_other_processes_cache(redis_url):
    from microadjust.redis_bus import open_redis_mode

    one = await open_redis_mode(redis_url, process_id="proc-one")
    two = await open_redis_mode(redis_url, process_id="proc-two")
    snap = await two.store.load(VID, SID)
    await two.store.commit(VID, SID, snap, {"v": {"x": 1}, "s": {}}, 1, 0, [])
    assert (VID, SID) in two.store._scache
    await one.store.erase_visitor(VID)
    await one.bus.publish_erase(VID)
    deadline = asyncio.get_running_loop().time() + 2
    while (VID, SID) in two.store._scache:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await one.close()
    await two.close()


async def test_each_process_knows_when_a_visitor_is_shared_with_another(two_processes):
    a, b = two_processes
    await a.join(VID)
    assert not a.shared(VID)  # alone: a nudge would be a wasted round trip
    await b.join(VID)
    assert b.shared(VID)  # b saw a in presence when it joined ...
    deadline = asyncio.get_running_loop().time() + 2
    while not a.shared(VID):  # ... and told a
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await b.leave(VID)
    assert not b.shared(VID)


async def test_close_does_not_wait_forever_for_a_task_stuck_in_its_cleanup(redis_server, caplog):
    bus = RedisBus(redis_server.url, process_id="proc-stuck")
    await bus.start()

    async def stuck_in_cleanup():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.Event().wait()  # e.g. a close that waits on a half-used connection

    stuck = asyncio.get_running_loop().create_task(stuck_in_cleanup())
    bus._tasks.append(stuck)
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(bus.close(), 30)
    assert asyncio.get_running_loop().time() - started < 15
    assert "did not stop within 5 s" in caplog.text
    stuck.cancel()  # a second cancel ends it


async def test_a_pubsub_close_that_ignores_cancellation_is_left_behind_after_its_bound():
    # asyncio.wait_for would cancel it and then wait for it to end: here, forever.
    from microadjust.redis_bus import _quietly

    released = asyncio.Event()

    async def stuck_close():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if released.is_set():
                    raise  # the test lets it go at the end

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(_quietly(stuck_close(), timeout=0.2), 10)
    assert loop.time() - started < 5
    [left] = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "stuck_close"]
    released.set()
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left


async def test_presence_refresh_is_spread_in_slices_and_skips_visitors_that_left(redis_url, monkeypatch):
    # All local visitors in one pipeline held the loop for tens of ms every few seconds: the
    # refresh goes in slices of PRESENCE_SLICE, spread over the period (a third of the TTL).
    import microadjust.redis_bus as bus_module

    monkeypatch.setattr(bus_module, "PRESENCE_SLICE", 10)
    bus = RedisBus(redis_url, process_id="proc-slices", presence_ttl_s=0.9)
    calls: list[list[str]] = []
    real = bus._mark_present

    async def recorded(vids):
        calls.append(list(vids))
        return await real(vids)

    bus._mark_present = recorded
    await bus.start()
    try:
        vids = [f"v_slice_{i:04d}" for i in range(35)]
        for vid in vids:
            await bus.join(vid)
        await bus.leave(vids[-1])
        calls.clear()
        await asyncio.sleep(0.75)  # a little over two periods of 0.3 s
        assert calls and max(len(c) for c in calls) <= 10  # 34 visitors: slices of 10 and 4
        assert vids[-1] not in {v for c in calls for v in c}  # it left: not marked again
        assert set(vids[:-1]) <= {v for c in calls for v in c}
        await asyncio.sleep(0.5)  # past the TTL of the joins: only the refresh keeps them
        for vid in vids[:-1:7]:
            assert await bus.present(vid) == ["proc-slices"]
        assert await bus.present(vids[-1]) == []
    finally:
        await bus.close()


async def test_a_rules_change_after_redis_restarted_empty_still_reaches_the_other_process(two_processes):
    """Versions keep rising across an empty restart (they start from the writer's clock), so the
    other process, which saw the old version, adopts the new document."""
    a, b = two_processes
    changed = Inbox()
    b.on_change = changed
    b.watch("rules")
    first = await a.put_document("rules", {"rules": [{"id": "before"}]})
    assert await changed.wait(1, timeout=1.0) == [("rules", {"rules": [{"id": "before"}]})]
    await a.client.delete("ma:doc:rules")  # Redis restarted with nothing on disk
    second = await a.put_document("rules", {"rules": [{"id": "after"}]})
    assert second > first
    assert (await changed.wait(2, timeout=2.0))[-1] == ("rules", {"rules": [{"id": "after"}]})
