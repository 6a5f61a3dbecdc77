"""The embedded store: profiles and sequence numbers in this process's memory.

`microadjust serve` uses it when no Redis is configured. It keeps the `Store` contract (see
`store/__init__.py`): a commit is compare-and-set on the visitor and session versions read by
`load`, under one lock, so two tabs of a visitor (two sessions sharing the visitor part) never
overwrite each other's update. Accepted events go to the JSON lines `EventLog` inside the same
commit, so an acked event is in the log.

Nothing survives a restart: that is the embedded mode's documented trade-off (docs/SERVER.md).

Ownership (why there are no copies on the hot path): a stored profile part is immutable from the
moment it is committed. `commit` keeps the objects it is given (the engine's fresh result, which
the gateway only reads and serialises afterwards) and `load` hands those same objects out;
`evaluate` never mutates its input (docs/ARCHITECTURE.md) and a later commit *replaces* the
stored parts instead of changing them, so a snapshot already handed out keeps its state. Whoever
wants to change a loaded profile outside the engine must copy it first; `export_visitor` returns
copies because its result leaves the server's control (admin API). Copying twice per batch was
~25% of the server's busy time (docs/PERFORMANCE.md "Hot-path changes");
tests/server/test_memory_store_copies.py holds the rule.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from typing import Any

from . import SessionSnapshot, Store


@dataclass
class _Session:
    profile: Any = None
    version: int = 0
    ack: int = 0
    pseq: int = 0
    events: int = 0  # events stored in this session


@dataclass
class _Visitor:
    profile: Any = None
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
            # No copies (see "Ownership" in the module docstring): the parts are handed out as
            # stored; a later commit replaces them rather than changing them, so a snapshot
            # never sees a later commit's state.
            profile = {"v": v.profile, "s": s.profile}
        return SessionSnapshot(profile=profile, ack=s.ack, pseq=s.pseq, version=(v.version, s.version))

    async def commit(self, vid, sid, snapshot, profile, ack, pseq, events) -> bool:
        async with self._lock:
            v = self._visitors.setdefault(vid, _Visitor())
            s = self._sessions.setdefault((vid, sid), _Session())
            if (v.version, s.version) != tuple(snapshot.version):
                return False
            # Kept as given (ownership: module docstring); the caller's engine result is not
            # touched after commit, and nothing here mutates a stored part.
            v.profile = profile.get("v")
            s.profile = profile.get("s")
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
            sessions[sid] = {"profile": copy.deepcopy(s.profile), "ack": s.ack, "pseq": s.pseq, "events": s.events}
        return {"vid": vid, "profile": copy.deepcopy(v.profile) if v else None, "sessions": sessions}

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
