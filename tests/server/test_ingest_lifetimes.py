"""What a batch allocates does not outlive what needs it (docs/PERFORMANCE.md, "Garbage collector:
what a message allocates dies young"): while the store waits for its round trip, neither the
snapshot's profile nor the engine's result is held by the batch path; only the store decides
what it keeps."""

from __future__ import annotations

import asyncio
import weakref

from microadjust import protocol as P
from microadjust.gateway import Ingest, Stats
from microadjust.store import SessionSnapshot, Store


class Part(dict):
    """A profile part that can be watched with a weak reference."""


class SlowStore(Store):
    """Commits wait until released; `seen` records what the store was handed."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.loaded: weakref.ref | None = None
        self.seen: list = []

    async def load(self, vid, sid):
        part = Part(n=1)
        self.loaded = weakref.ref(part)
        return SessionSnapshot(profile={"v": part, "s": {}}, ack=0, pseq=0, version=(0, 0))

    async def commit(self, vid, sid, snapshot, profile, ack, pseq, events):
        self.seen.append((snapshot.profile, type(profile["v"])))
        profile = None  # what a store that serialises first does (store/redis.py)
        self.waiting.set()
        await self.release.wait()
        return True

    async def export_visitor(self, vid):
        return {}

    async def erase_visitor(self, vid):
        return None

    async def close(self, timeout: float = 5.0):
        return None


class Engine:
    """Returns a fresh profile part the test can watch."""

    def __init__(self) -> None:
        self.result: weakref.ref | None = None

    def evaluate(self, profile, events, now, ruleset, consent="granted"):
        part = Part(n=2)
        self.result = weakref.ref(part)
        return {"profile": {"v": part, "s": {}}, "patches": [], "reverts": [], "changed": []}

    @staticmethod
    def validate_patch(patch):
        return []


class Rulebook:
    ruleset = None


async def test_neither_profile_is_held_while_the_store_waits_for_its_round_trip():
    store, engine = SlowStore(), Engine()
    ingest = Ingest(store, engine, Rulebook(), Stats())
    _, batch = P.validate_client_message({"t": "events", "seq": 1, "events": [{"k": "click", "ts": 1, "item": "p1"}]})
    task = asyncio.ensure_future(ingest.batch("v_lifetime1", "s_lifetime1", "granted", batch))
    await store.waiting.wait()
    assert store.seen == [(None, Part)]  # the snapshot's profile was let go before the commit
    assert store.loaded() is None and engine.result() is None
    store.release.set()
    assert (await task).ack == 1
