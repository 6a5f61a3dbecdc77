"""Resume (PROTOCOL §2.3): what a reconnecting session missed, and whether that is all of it.

Every patch/revert message a session is sent (§5) is also kept in a bounded per-session outbox
with its `pseq`. A tab that reconnects says in `hello.pseq` the last one it applied; the gateway
sends the messages after it right behind `welcome` and says in `welcome.resume.complete`
whether nothing between the client's pseq and the session's current one is missing.

`resume_from` is that computation, shared by both outboxes: `LocalOutbox` below (the embedded
mode, one process) and `redis_bus.RedisBus` (the outbox in Redis, reachable from any process).
Both keep the same bound (`outbox_size` messages per session, `outbox_ttl_s` after the last one).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Iterable

from . import jsonfast


@dataclass
class Resume:
    """Outcome of a reconnect with the last applied pseq (PROTOCOL §2.3)."""

    messages: list[dict[str, Any]]  # missed patch/revert messages, in pseq order
    complete: bool  # every message between the client's pseq and `pseq` is in `messages`
    pseq: int  # the session's current patch sequence number


def resume_from(entries: Iterable[dict[str, Any]], last_pseq: int, current: int) -> Resume:
    """The messages after `last_pseq` among `entries`, with the completeness flag.

    `current` is the session's stored pseq. Recovery is incomplete when a message between
    `last_pseq` and the current pseq is missing (trimmed by the bound, expired, or committed by
    a process that died before recording it), or when the client claims a pseq above anything
    the server knows (its state expired or was erased).
    """
    by_pseq: dict[int, dict[str, Any]] = {}
    for msg in entries:
        p = msg.get("pseq", 0)
        if isinstance(p, int) and p > last_pseq:
            by_pseq[p] = msg
    top = max(current, max(by_pseq, default=0))
    complete = last_pseq <= top and sorted(by_pseq) == list(range(last_pseq + 1, top + 1))
    return Resume(messages=[by_pseq[p] for p in sorted(by_pseq)], complete=complete, pseq=top)


class LocalOutbox:
    """The embedded mode's outbox, in this process's memory.

    Bounds: `size` messages per session (the same 64 as the Redis outbox), dropped `ttl_s`
    after the session's last message, and at most `sessions` sessions (least recently written
    evicted first). A message is ~0.2-0.5 KB, so the worst case is `sessions x size x 0.5 KB`
    (10,000 x 64 x 0.5 KB = 320 MB if every session had 64 patches in the last hour; typical
    sessions get a handful). A session evicted by a bound resumes with `complete: false`.
    """

    def __init__(self, size: int = 64, ttl_s: float = 3600.0, sessions: int = 10_000, clock=time.monotonic) -> None:
        if size <= 0 or ttl_s <= 0 or sessions <= 0:
            raise ValueError("outbox size, ttl and sessions must be positive")
        self.size = size
        self.ttl_s = ttl_s
        self.max_sessions = sessions
        self.clock = clock
        # (vid, sid) -> (expiry, messages); ordered by last write (LRU)
        self._boxes: OrderedDict[tuple[str, str], tuple[float, deque]] = OrderedDict()

    def record(self, vid: str, sid: str, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        key = (vid, sid)
        entry = self._boxes.pop(key, None)
        box = entry[1] if entry is not None and entry[0] > self.clock() else deque(maxlen=self.size)
        box.extend([jsonfast.dumps_kept(m) for m in messages])
        self._boxes[key] = (self.clock() + self.ttl_s, box)
        while len(self._boxes) > self.max_sessions:
            self._boxes.popitem(last=False)
        self._expire()

    def messages(self, vid: str, sid: str) -> list[dict[str, Any]]:
        entry = self._boxes.get((vid, sid))
        if entry is None or entry[0] <= self.clock():
            return []
        return [jsonfast.loads(m) for m in entry[1]]

    def resume(self, vid: str, sid: str, last_pseq: int, current: int) -> Resume:
        return resume_from(self.messages(vid, sid), last_pseq, current)

    def forget_visitor(self, vid: str) -> None:
        """Erasure (DELETE /v1/visitors/{id}): drop every outbox of the visitor."""
        for key in [k for k in self._boxes if k[0] == vid]:
            del self._boxes[key]

    def __len__(self) -> int:
        return len(self._boxes)

    def _expire(self) -> None:
        # The least recently written sessions come first; stop at the first live one.
        now = self.clock()
        while self._boxes:
            key, (expiry, _) = next(iter(self._boxes.items()))
            if expiry > now:
                return
            del self._boxes[key]
