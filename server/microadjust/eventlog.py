"""The event log of the embedded mode: accepted events as JSON lines, rotated by size.

One record per accepted event, `{"vid", "sid", "at", ...event}` (the same record the Redis store
writes to its stream: `store.redis.event_record`), where `at` is the server's receive time in
ms and the event keeps its `seq`. Files rotate at `max_bytes` and `backups` old files are kept
(`events.jsonl.1` is the newest), so the log's disk use is bounded.

Writes are plain buffered file writes flushed after each batch: a batch is a few hundred bytes
and the page cache absorbs them; an fsync per batch would cost milliseconds on the event path.

A visitor's records are exported (`visitor_records`) and erased (`erase`: every file rewritten
without them) across the current and the rotated files, in a thread so that the event loop keeps
serving (docs/SERVER.md, "Export and erasure").
"""

from __future__ import annotations

import asyncio
import os
import tempfile
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
        # Readers and erasures of whole files in a thread (export, erasure): while any runs, the
        # files keep their names (rotation waits; the current file may outgrow max_bytes a little).
        self._holds = 0
        self._erasing = asyncio.Lock()

    def append(self, vid: str, sid: str, events: Iterable[dict[str, Any]], at: int) -> None:
        records = [jsonfast.dumps({"vid": vid, "sid": sid, "at": at, **e}) for e in events]
        if not records:
            return
        records.append(b"")
        lines = b"\n".join(records)
        if self._size and self._size + len(lines) > self.max_bytes and not self._holds:
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

    # ------------------------------------------------------------------ export and erasure

    def _paths(self) -> list[Path]:
        """The log's files, oldest first: `events.jsonl.N` ... `events.jsonl.1`, `events.jsonl`."""
        older = [self.path.with_name(f"{self.path.name}.{i}") for i in range(self.backups, 0, -1)]
        return [p for p in older if p.exists()] + [self.path]

    def _release(self) -> None:
        self._holds -= 1
        if not self._holds and self._size > self.max_bytes:
            self._rotate()

    async def visitor_records(self, vid: str) -> list[dict[str, Any]]:
        """Every logged record of visitor `vid`, oldest first, from every file of the log (the
        export of `GET /v1/visitors/{id}`). Read in a thread: the log can be hundreds of MB."""
        self._file.flush()
        self._holds += 1
        try:
            return await asyncio.to_thread(_scan, self._paths(), _needle(vid), vid)
        finally:
            self._release()

    async def erase(self, vid: str) -> int:
        """Remove every logged record of visitor `vid` from every file of the log; returns how
        many were removed. Each file is rewritten without them (in a thread, then put in place
        with `os.replace`); records appended to the current file meanwhile are carried over."""
        async with self._erasing:
            self._file.flush()
            self._holds += 1
            try:
                needle = _needle(vid)
                *older, current = self._paths()
                removed = 0
                for path in older:
                    tmp, n = await asyncio.to_thread(_filtered_copy, path, needle, vid, None)
                    removed += n
                    _put(tmp, path, n)
                size = self._size
                tmp, n = await asyncio.to_thread(_filtered_copy, current, needle, vid, size)
                # Back on the loop, nothing awaited from here on: what was appended since the
                # copy started goes after it, then the copy becomes the current file.
                self._file.flush()
                with open(current, "rb") as src, open(tmp, "ab") as dst:
                    src.seek(size)
                    m = _filter(src, needle, vid, dst)
                removed += n + m
                if n + m:
                    self._file.close()
                    os.replace(tmp, current)
                    self._file = open(current, "ab")
                    self._size = self._file.tell()
                else:
                    os.unlink(tmp)
                return removed
            finally:
                self._release()

    def read(self) -> list[dict[str, Any]]:
        """Every record in the current file (tests); rotated files are not included (the export
        reads them all: `visitor_records`)."""
        self._file.flush()
        with open(self.path, encoding="utf-8") as f:
            return [ujson.loads(line) for line in f if line.strip()]

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _needle(vid: str) -> bytes:
    """The bytes every record of `vid` holds (ids are [A-Za-z0-9_-]: nothing is escaped); a line
    without them is not parsed."""
    return b'"vid":' + jsonfast.dumps(vid)


def _is_record_of(line: bytes, needle: bytes, vid: str) -> bool:
    if needle not in line or not line.endswith(b"\n"):  # no newline: a write in progress
        return False
    try:
        return ujson.loads(line).get("vid") == vid
    except (ValueError, AttributeError):
        return False


def _scan(paths: list[Path], needle: bytes, vid: str) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        with f:
            out.extend(ujson.loads(line) for line in f if _is_record_of(line, needle, vid))
    return out


def _filter(lines, needle: bytes, vid: str, dst) -> int:
    """Write the lines that are not `vid`'s records to `dst`; returns how many were left out."""
    removed = 0
    for line in lines:
        if _is_record_of(line, needle, vid):
            removed += 1
        else:
            dst.write(line)
    return removed


def _upto(src, limit: int | None):
    """The lines of `src` within its first `limit` bytes (all of them without a limit)."""
    at = 0
    for line in src:
        if limit is not None:
            if at >= limit:  # appended since the copy started: the caller carries it over
                return
            at += len(line)
        yield line


def _filtered_copy(path: Path, needle: bytes, vid: str, limit: int | None) -> tuple[str, int]:
    """A copy of `path` (its first `limit` bytes) without `vid`'s records, next to it; returns its
    name and how many records were left out."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
        return tmp, _filter(_upto(src, limit), needle, vid, dst)


def _put(tmp: str, path: Path, removed: int) -> None:
    if removed:
        os.replace(tmp, path)
    else:
        os.unlink(tmp)
