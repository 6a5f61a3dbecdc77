"""Serialisation of the records written on every batch (event log, Redis profile parts).

orjson writes these 4-6x faster than ujson (docs/PERFORMANCE.md): on the event path of both the
embedded mode (JSON lines) and Redis mode (profile parts, stream records) that is a few per cent
of a batch's CPU. Output is compact UTF-8 JSON either way, and every reader (`ujson.loads`,
`json.loads`, consumers of the stream) parses both the same. What orjson refuses (an integer
beyond 64 bits, a non-string key) falls back to ujson, so anything the server wrote before still
gets written, with the same errors as before for what neither can encode.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import ujson

# A surrogate code point in a parsed str is a lone one (a well-formed pair becomes one character).
_SURROGATES = re.compile("[\ud800-\udfff]")


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


def loads(data: bytes | str, repair: bool = False) -> Any:
    """Parse JSON as RFC 8259 defines it (orjson; ujson for what orjson refuses, which decides).

    orjson refuses an integer beyond 64 bits, which ujson reads. ujson also reads what is not
    JSON text: NaN, Infinity, numbers that overflow to infinity, and strings with a lone UTF-16
    surrogate (which no UTF-8 encoder can write back: the event log and the wire would fail on
    them after the batch was stored). What ujson reads is therefore checked for those, and
    refused with a ValueError as ujson refuses everything else; with `repair`, a lone surrogate
    is replaced by U+FFFD instead (the browser's own text, cut in the middle of a pair)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        value = ujson.loads(data)
        try:
            check_plain(value)
        except LoneSurrogate:
            if not repair:
                raise
            value = _repaired(value)
            check_plain(value)
        return value


class LoneSurrogate(ValueError):
    pass


def _repaired(x: Any) -> Any:
    t = type(x)
    if t is str:
        return x if x.isascii() else _SURROGATES.sub("\ufffd", x)
    if t is dict:
        return {_repaired(k): _repaired(v) for k, v in x.items()}
    if t is list:
        return [_repaired(v) for v in x]
    return x


_INF = float("inf")


def check_plain(value: Any) -> None:
    """Raise ValueError if `value` (parsed JSON) holds a non-finite number or a string with a lone
    surrogate: what a lenient parser accepts that RFC 8259 JSON in UTF-8 cannot carry."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        x = pop()
        t = type(x)
        if t is str:
            if not x.isascii() and _SURROGATES.search(x):
                raise LoneSurrogate("invalid string: lone surrogate")
        elif t is float:
            if x != x or x in (_INF, -_INF):
                raise ValueError("number is not finite (NaN, Infinity or out of range)")
        elif t is dict:
            for k, v in x.items():
                push(k)
                push(v)
        elif t is list:
            stack.extend(x)
