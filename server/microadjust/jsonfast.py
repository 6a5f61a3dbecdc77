"""Serialisation of the records written on every batch (event log, Redis profile parts).

orjson writes these 4-6x faster than ujson (docs/PERFORMANCE.md): on the event path of both the
embedded mode (JSON lines) and Redis mode (profile parts, stream records) that is a few per cent
of a batch's CPU. Output is compact UTF-8 JSON either way, and every reader (`ujson.loads`,
`json.loads`, consumers of the stream) parses both the same. What orjson refuses (an integer
beyond 64 bits, a non-string key) falls back to ujson, so anything the server wrote before still
gets written, with the same errors as before for what neither can encode.
"""

from __future__ import annotations

from typing import Any

import orjson
import ujson


def dumps(x: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (non-ASCII and `/` unescaped)."""
    try:
        return orjson.dumps(x)
    except TypeError:  # orjson.JSONEncodeError
        return ujson.dumps(x, ensure_ascii=False, escape_forward_slashes=False).encode()


def dumps_kept(x: Any) -> bytes:
    """`dumps` for bytes that are kept for long (stored profiles, outboxes, caches)."""
    return kept(dumps(x))


def kept(data: bytes) -> bytes:
    """What of `dumps`' bytes is worth keeping for long: orjson's bytes keep the buffer it wrote
    into (4 KB and up, whatever the length: measured with tracemalloc), an exact-length copy
    does not."""
    return memoryview(data).tobytes()


def loads(data: bytes | str) -> Any:
    """Parse what `dumps` wrote (orjson; ujson for what orjson refuses, an integer beyond 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return ujson.loads(data)
