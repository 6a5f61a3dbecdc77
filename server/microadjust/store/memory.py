"""The embedded store: profiles and sequence numbers in this process's memory.

`microadjust serve` uses it when no Redis is configured. It keeps the `Store` contract (see
`store/__init__.py`): a commit is compare-and-set on the visitor and session versions read by
`load`, under one lock, so two tabs of a visitor (two sessions sharing the visitor part) never
overwrite each other's update. Accepted events go to the JSON lines `EventLog` inside the same
commit, so an acked event is in the log.

Nothing survives a restart: that is the embedded mode's documented trade-off (docs/SERVER.md).

Profiles are kept serialised (compact JSON bytes, `jsonfast`), not as objects. `load` parses
them, so every snapshot is a fresh object its caller owns and may change; `commit` serialises the
parts it is given and keeps no reference to them. A profile as objects is a few hundred dicts and
lists that outlive the batch: the garbage collector walked every one of them again and again (the
young generations as each batch's new profile aged, and the whole store in each full collection:
~100 ms pauses per 1,000 sessions, and ~15% of the CPU at 1,000 x 5 batches/s). Bytes are one
object the collector never looks into, and smaller (RSS with a page view per connection 31.0 ->
25.9 KB). Parsing and serialising cost ~6% of a batch's
CPU, about what the collector saved (docs/PERFORMANCE.md, step 8 of "Transport, event loop,
validation and engine").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from .. import jsonfast
from . import SessionSnapshot, Store


@dataclass
class _Session:
    profile: bytes | None = None  # the session part, serialised
    version: int = 0
    ack: int = 0
    pseq: int = 0
    events: int = 0  # events stored in this session


@dataclass
class _Visitor:
    profile: bytes | None = None  # the visitor part, serialised
    version: int = 0


class MemoryStore(Store):
    def __init__(self, log=None, clock=time.time) -> None:
        self.log = log  # an EventLog (or None: events are counted, not logged)
        self._clock = clock
        self._visitors: dict[str, _Visitor] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._by_visitor: dict[str, set[str]] = {}
        # One lock for the whole store: a commit is a few dict writes, never awaits inside,
        # so a single lock costs nothing and makes visitor + session CAS trivially atomic.
        self._lock = asyncio.Lock()

    async def load(self, vid: str, sid: str) -> SessionSnapshot:
        v = self._visitors.get(vid) or _Visitor()
        s = self._sessions.get((vid, sid)) or _Session()
        profile = None
        if v.profile is not None or s.profile is not None:
            profile = {"v": _parse(v.profile), "s": _parse(s.profile)}
        return SessionSnapshot(profile=profile, ack=s.ack, pseq=s.pseq, version=(v.version, s.version))

    async def commit(self, vid, sid, snapshot, profile, ack, pseq, events) -> bool:
        async with self._lock:
            v = self._visitors.setdefault(vid, _Visitor())
            s = self._sessions.setdefault((vid, sid), _Session())
            if (v.version, s.version) != tuple(snapshot.version):
                return False
            v.profile = _serialise(profile.get("v"))
            s.profile = _serialise(profile.get("s"))
            v.version += 1
            s.version += 1
            s.ack = max(s.ack, ack)
            s.pseq = max(s.pseq, pseq)
            s.events += len(events)
            self._by_visitor.setdefault(vid, set()).add(sid)
            if self.log is not None and events:
                self.log.append(vid, sid, events, int(self._clock() * 1000))
            return True

    async def export_visitor(self, vid: str) -> dict[str, Any]:
        v = self._visitors.get(vid)
        sessions = {}
        for sid in sorted(self._by_visitor.get(vid, ())):
            s = self._sessions[(vid, sid)]
            sessions[sid] = {"profile": _parse(s.profile), "ack": s.ack, "pseq": s.pseq, "events": s.events}
        return {"vid": vid, "profile": _parse(v.profile) if v else None, "sessions": sessions}

    async def erase_visitor(self, vid: str) -> None:
        async with self._lock:
            self._visitors.pop(vid, None)
            for sid in self._by_visitor.pop(vid, ()):
                self._sessions.pop((vid, sid), None)

    def session_counts(self) -> dict[str, int]:
        """Stored events per session id (admin stats; tests compare them with the page's count)."""
        return {sid: s.events for (_, sid), s in self._sessions.items()}

    async def close(self, timeout: float = 5.0) -> None:
        # Every commit already wrote its events; closing flushes the file's buffer.
        if self.log is not None:
            self.log.close()


def _serialise(part: Any) -> bytes | None:
    if part is None:
        return None
    # orjson's bytes keep the buffer it wrote into (8 KB and up, whatever the length: measured
    # with tracemalloc); a copy of the exact length is what is worth keeping for long.
    return memoryview(jsonfast.dumps(part)).tobytes()


def _parse(blob: bytes | None) -> Any:
    return None if blob is None else jsonfast.loads(blob)
