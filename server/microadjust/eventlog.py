"""The event log of the embedded mode: accepted events as JSON lines, rotated by size.

One record per accepted event, `{"vid", "sid", "at", ...event}` (the same record the Redis store
writes to its stream: `store.redis.event_record`), where `at` is the server's receive time in
ms and the event keeps its `seq`. Files rotate at `max_bytes` and `backups` old files are kept
(`events.jsonl.1` is the newest), so the log's disk use is bounded.

Writes are plain buffered file writes flushed after each batch: a batch is a few hundred bytes
and the page cache absorbs them; an fsync per batch would cost milliseconds on the event path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import ujson

from . import jsonfast


class EventLog:
    """Append-only JSON lines with size-bounded rotation."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 * 1024 * 1024, backups: int = 5) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("event log: max_bytes must be positive and backups >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")
        self._size = self._file.tell()
        self.records = 0  # written by this process

    def append(self, vid: str, sid: str, events: Iterable[dict[str, Any]], at: int) -> None:
        records = [jsonfast.dumps({"vid": vid, "sid": sid, "at": at, **e}) for e in events]
        if not records:
            return
        records.append(b"")
        lines = b"\n".join(records)
        if self._size and self._size + len(lines) > self.max_bytes:
            self._rotate()
        self._file.write(lines)
        self._file.flush()
        self._size += len(lines)
        self.records += len(records) - 1

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")
        self._size = 0

    def read(self) -> list[dict[str, Any]]:
        """Every record in the current file (tests, export); rotated files are not included."""
        self._file.flush()
        with open(self.path, encoding="utf-8") as f:
            return [ujson.loads(line) for line in f if line.strip()]

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
