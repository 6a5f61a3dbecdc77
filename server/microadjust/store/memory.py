"""The embedded store: profiles and sequence numbers in this process's memory.

`microadjust serve` uses it when no Redis is configured. It keeps the `Store` contract (see
`store/__init__.py`): a commit is compare-and-set on the visitor and session versions read by
`load`, under one lock, so two tabs of a visitor (two sessions sharing the visitor part) never
overwrite each other's update. Accepted events go to the JSON lines `EventLog` inside the same
commit, so an acked event is in the log.

Nothing survives a restart: that is the embedded mode's documented trade-off (docs/SERVER.md).

Memory is bounded (docs/SERVER.md, "Embedded store"). Visitors are kept in order of their last
commit; each commit drops, from the least recently active end, the visitors idle longer than
`retention_s` (the same retention as Redis mode's key TTLs) and those beyond `max_visitors`, each
with its sessions. A visitor keeps at most `max_sessions_per_visitor` sessions (the least recently
active go first) and none idle longer than the retention. A dropped session that comes back starts
afresh, as after a Redis key expired: its next batch is evaluated on an empty profile.

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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from . import SessionSnapshot, Store, StoreUnavailable, part_bytes, part_object


@dataclass(slots=True)  # no __dict__: one object fewer per record for the collector
class _Session:
    profile: bytes | None = None  # the session part, serialised
    version: int = 0
    ack: int = 0
    pseq: int = 0
    events: int = 0  # events stored in this session
    touched: float = 0.0  # clock time of its last commit


@dataclass(slots=True)
class _Visitor:
    profile: bytes | None = None  # the visitor part, serialised
    version: int = 0
    touched: float = 0.0  # clock time of the visitor's last commit (any session)
    # Its sessions by id, least recently active first (commit moves its session to the end).
    sessions: dict[str, _Session] = field(default_factory=dict)


class MemoryStore(Store):
    def __init__(
        self,
        log=None,
        clock=time.time,
        *,
        retention_s: float = 30 * 24 * 3600,
        max_visitors: int = 100_000,
        max_sessions_per_visitor: int = 100,
    ) -> None:
        for name, value in (("retention_s", retention_s), ("max_visitors", max_visitors),
                            ("max_sessions_per_visitor", max_sessions_per_visitor)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.log = log  # an EventLog (or None: events are counted, not logged)
        self._clock = clock
        self.retention_s = retention_s
        self.max_visitors = max_visitors
        self.max_sessions_per_visitor = max_sessions_per_visitor
        # Least recently active first: `commit` moves its visitor to the end.
        self._visitors: OrderedDict[str, _Visitor] = OrderedDict()
        # One lock for the whole store: a commit is a few dict writes, never awaits inside,
        # so a single lock costs nothing and makes visitor + session CAS trivially atomic.
        self._lock = asyncio.Lock()

    async def load(self, vid: str, sid: str) -> SessionSnapshot:
        v = self._visitors.get(vid) or _NO_VISITOR
        s = v.sessions.get(sid) or _NO_SESSION
        profile = None
        if v.profile is not None or s.profile is not None:
            profile = {"v": part_object(v.profile), "s": part_object(s.profile)}
        return SessionSnapshot(profile=profile, ack=s.ack, pseq=s.pseq, version=(v.version, s.version))

    async def commit(self, vid, sid, snapshot, profile, ack, pseq, events) -> bool:
        async with self._lock:
            v = self._visitors.get(vid) or _Visitor()
            s = v.sessions.get(sid) or _Session()
            if (v.version, s.version) != tuple(snapshot.version):
                return False
            # Everything that can fail comes before the first change: a batch is either stored
            # and logged, or neither (then it is not acked and the client sends it again).
            vpart, spart = part_bytes(profile.get("v")), part_bytes(profile.get("s"))
            now = self._clock()
            if self.log is not None and events:
                try:
                    self.log.append(vid, sid, events, int(now * 1000))
                except OSError as exc:
                    raise StoreUnavailable(f"event log not written: {exc}") from exc
            v.profile, s.profile = vpart, spart
            v.version += 1
            s.version += 1
            s.ack = max(s.ack, ack)
            s.pseq = max(s.pseq, pseq)
            s.events += len(events)
            v.touched = s.touched = now
            if vid in self._visitors:
                self._visitors.move_to_end(vid)
            else:
                self._visitors[vid] = v
            sessions = v.sessions
            if sid in sessions:
                if len(sessions) > 1:
                    del sessions[sid]
                    sessions[sid] = s
            else:
                sessions[sid] = s
                self._trim_sessions(sessions, now)
            self._evict(now)
            return True

    def _trim_sessions(self, sessions: dict[str, _Session], now: float) -> None:
        """A visitor got a new session: drop its oldest beyond the cap and any past retention
        (never the newest: the session being committed)."""
        _drop_oldest(sessions, self.max_sessions_per_visitor, now - self.retention_s, "session", keep=1)

    def _evict(self, now: float) -> None:
        """Drop the least recently active visitors (each with its sessions) while past
        retention or over the cap."""
        _drop_oldest(self._visitors, self.max_visitors, now - self.retention_s, "visitor", keep=0)

    def __len__(self) -> int:
        """Visitors held."""
        return len(self._visitors)

    async def export_visitor(self, vid: str) -> dict[str, Any]:
        v = self._visitors.get(vid)
        sessions = {}
        for sid, s in sorted(v.sessions.items() if v else ()):
            sessions[sid] = {"profile": part_object(s.profile), "ack": s.ack, "pseq": s.pseq, "events": s.events}
        events = await self.log.visitor_records(vid) if self.log is not None else []
        return {"vid": vid, "profile": part_object(v.profile) if v else None, "sessions": sessions,
                "events": events}

    async def erase_visitor(self, vid: str) -> None:
        async with self._lock:
            self._visitors.pop(vid, None)  # its sessions with it
        if self.log is not None:
            # Outside the lock: the log's files are rewritten in a thread, commits go on.
            await self.log.erase(vid)

    def session_counts(self) -> dict[str, int]:
        """Stored events per session id (admin stats; tests compare them with the page's count)."""
        return {sid: s.events for v in self._visitors.values() for sid, s in v.sessions.items()}

    async def close(self, timeout: float = 5.0) -> None:
        # Every commit already wrote its events; closing flushes the file's buffer.
        if self.log is not None:
            self.log.close()


def _drop_oldest(entries: dict, cap: int, cutoff: float, what: str, keep: int) -> None:
    """Drop entries (least recently active first, as `entries` is ordered) while there are more
    than `cap`, or the oldest was last touched before `cutoff`; the newest `keep` always stay."""
    while len(entries) > keep:
        key, oldest = next(iter(entries.items()))
        if len(entries) > cap:
            reason = "capacity"
        elif oldest.touched < cutoff:
            reason = "retention"
        else:
            return
        del entries[key]
        metrics.STORE_EVICTIONS.labels(what, reason).inc()


_NO_VISITOR = _Visitor()  # what `load` reads for a visitor or session not held (never changed)
_NO_SESSION = _Session()
