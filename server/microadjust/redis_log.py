"""Event and exposure log on Redis Streams: bounded, readable by consumer groups.

Accepted events reach the stream `ma:events` through the store's commit (`store/redis.py`:
atomically with the ack on one Redis, via a per-visitor pending list on a cluster), one entry
per accepted batch: field `b`, `{"vid", "sid", "at", "ev": [event, ...]}`. Exposures (an
experiment variant shown, or counterfactually not shown, to a visitor) are appended here one
per entry, field `e`: the JSON record. The readers below hand out per-event records, the same
records the embedded mode writes as JSON lines, so the training and statistics jobs read either
source the same way: `[(entry id, record)]`, where the records of one batch share their entry's
id (ack the id once, after the last of them).

Both streams are capped with `MAXLEN ~ N` entries (batches, for the event stream): approximate
trimming is O(1) amortised; exact trimming would cost a node walk on every add. Consumers use a consumer group: each entry is delivered to
one consumer of the group and stays pending until acked, so a job that crashes re-reads what it
had not finished (`claim_stale`). Delivery is at least once; records carry `(sid, seq)` for
events so a consumer can drop a duplicate.
"""

from __future__ import annotations

from typing import Any

import ujson
from redis.exceptions import ResponseError

from .store.redis import EVENT_STREAM, connect, entry_records

EXPOSURE_STREAM = "ma:exposures"


class RedisEventLog:
    """Appends exposures and reads both streams through consumer groups."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        cluster: bool | None = None,
        events_stream: str = EVENT_STREAM,
        exposures_stream: str = EXPOSURE_STREAM,
        maxlen: int = 1_000_000,
    ) -> None:
        if client is None:
            if not url:
                raise ValueError("RedisEventLog needs a Redis URL or a client")
            client = connect(url, cluster=cluster)
        if maxlen <= 0:
            raise ValueError(f"maxlen must be positive, got {maxlen}")
        self.client = client
        self.events_stream = events_stream
        self.exposures_stream = exposures_stream
        self.maxlen = maxlen

    async def append_exposure(self, record: dict[str, Any]) -> str:
        """Log one exposure record; returns its stream id."""
        return await self.client.xadd(
            self.exposures_stream,
            {"e": ujson.dumps(record, ensure_ascii=False)},
            maxlen=self.maxlen,
            approximate=True,
        )

    async def ensure_group(self, group: str, stream: str | None = None, start: str = "0") -> None:
        """Create the consumer group (and the stream) unless it exists; `start="0"` reads all."""
        stream = stream or self.events_stream
        try:
            await self.client.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self,
        group: str,
        consumer: str,
        *,
        stream: str | None = None,
        count: int = 100,
        block_ms: int | None = 1000,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The records of up to `count` new entries for this consumer: [(stream id, record)].

        A Redis that restarted without persistence has lost the group; it is recreated (from the
        start of whatever the stream now holds) instead of failing the job.
        """
        stream = stream or self.events_stream
        try:
            reply = await self.client.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group(group, stream)
            reply = await self.client.xreadgroup(
                group, consumer, {stream: ">"}, count=count, block=block_ms
            )
        return _records(reply)

    async def ack(self, group: str, ids: list[str], stream: str | None = None) -> int:
        """Acknowledge entries; ids may repeat (the records of one batch share their id)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        return await self.client.xack(stream or self.events_stream, group, *ids)

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, *, stream: str | None = None,
        count: int = 100,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Take over entries another consumer read but did not ack within `min_idle_ms`."""
        stream = stream or self.events_stream
        reply = await self.client.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        return _flatten(reply[1])

    async def length(self, stream: str | None = None) -> int:
        """Entries in the stream: batches for the event stream, records for exposures."""
        return await self.client.xlen(stream or self.events_stream)

    async def read_all(self, stream: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every record the stream holds (for small streams: tests, exports, debugging)."""
        entries = await self.client.xrange(stream or self.events_stream, "-", "+")
        return _flatten(entries)

    async def close(self) -> None:
        await self.client.aclose()


def _records(reply) -> list[tuple[str, dict[str, Any]]]:
    """Flatten an XREADGROUP reply (RESP2: [[stream, [(id, fields), ...]], ...])."""
    return [pair for _stream, entries in reply or [] for pair in _flatten(entries)]


def _flatten(entries) -> list[tuple[str, dict[str, Any]]]:
    """[(entry id, record)] for stream entries; a deleted (erased) entry still pending in a
    group comes back without fields and yields nothing."""
    return [(entry_id, r) for entry_id, fields in entries for r in entry_records(fields or {})]
