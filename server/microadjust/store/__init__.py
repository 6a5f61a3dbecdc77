"""Storage adapters: where profiles, sequence numbers and the event log live.

The gateway talks to a `Store`; the embedded default is `MemoryStore` (one process, no
dependencies), the production one a Redis store (many processes). Both give the same
guarantees, which is what lets tests swap them:

* A batch is committed atomically: profile, the session's stored-event sequence number (`ack`),
  its patch sequence number (`pseq`) and the batch's events move together or not at all.
* Commits are compare-and-set on the versions read by `load`, so two tabs of one visitor on two
  processes never overwrite each other's update: the loser reloads and re-evaluates.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from .. import jsonfast


def part_bytes(part: Any) -> bytes | None:
    """A profile part as both stores keep it in memory: compact JSON bytes of exact length, one
    object the garbage collector never looks into (docs/PERFORMANCE.md, "Garbage collector")."""
    return None if part is None else jsonfast.dumps_kept(part)


def part_object(blob: bytes | None) -> Any:
    """What `part_bytes` kept, parsed again: a fresh object its caller owns."""
    return None if blob is None else jsonfast.loads(blob)


class StoreUnavailable(Exception):
    """The batch was not stored: Redis is unreachable and the write buffer is full, or the
    embedded store's event log could not be written (a full disk).

    The gateway must not ack the batch (PROTOCOL §4); the tracker resends it later.
    """


@dataclass
class SessionSnapshot:
    """What `Store.load` returns for one (visitor, session)."""

    profile: dict[str, Any] | None  # engine profile {"v": visitor part, "s": session part}
    ack: int = 0  # highest event seq stored for the session (PROTOCOL §3, §4)
    pseq: int = 0  # highest patch seq sent in the session (PROTOCOL §5)
    version: tuple[int, int] = (0, 0)  # (visitor version, session version) for compare-and-set
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific bookkeeping


class Store(abc.ABC):
    """The adapter interface. Every method is a coroutine; none may block the event loop."""

    @abc.abstractmethod
    async def load(self, vid: str, sid: str) -> SessionSnapshot:
        """Profile and sequence numbers of a session (a fresh snapshot for a new one)."""

    @abc.abstractmethod
    async def commit(
        self,
        vid: str,
        sid: str,
        snapshot: SessionSnapshot,
        profile: dict[str, Any],
        ack: int,
        pseq: int,
        events: list[dict[str, Any]],
    ) -> bool:
        """Store the batch atomically if nothing changed since `snapshot` was loaded.

        `events` are the accepted events (each with its `seq`) for the event log. Returns False
        on a version conflict; the caller reloads, re-evaluates and tries again.
        """

    @abc.abstractmethod
    async def export_visitor(self, vid: str) -> dict[str, Any]:
        """Everything stored about a visitor (privacy export)."""

    @abc.abstractmethod
    async def erase_visitor(self, vid: str) -> None:
        """Remove a visitor's profile, sessions and events (privacy erasure)."""

    def invalidate_visitor(self, vid: str) -> None:
        """Another process changed this visitor: forget any state cached for it here."""

    async def ready(self) -> bool:
        """True when the store can take writes (drives `/readyz`)."""
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush buffers (within `timeout` seconds: the drain bound) and release connections."""
