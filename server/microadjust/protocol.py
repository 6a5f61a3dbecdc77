"""Validation of every inbound message of protocol v1, and the close codes (PROTOCOL.md).

Hand-written rather than driven by a JSON Schema library because it runs on every frame: a
schema validator costs tens of microseconds per batch, these checks a few. The normative form
is still `protocol/schema/*.schema.json`; `tests/protocol/` proves that this module and the
schemas accept and refuse exactly the same vectors and name the same path.

Validated messages are rebuilt from the fields this version knows: unknown fields are ignored
as §1 requires, and never reach the engine or the event log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import ujson

from . import jsonfast

VERSION = 1
MAX_INT = 9007199254740991  # 2**53 - 1: the largest integer JavaScript represents exactly

# §7 close codes.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003  # binary frame
CLOSE_TOO_LARGE = 1009
CLOSE_TRY_AGAIN = 1013  # a batch was dropped: reconnect after a pause and resend (§4, §7)
CLOSE_INTERNAL_ERROR = 1011
CLOSE_BAD_VERSION = 4001
CLOSE_BAD_HELLO = 4002
CLOSE_TOO_MANY_BAD = 4003
CLOSE_FLOOD = 4004
CLOSE_SITE_MISMATCH = 4005
CLOSE_TIMEOUT = 4008
CLOSE_DRAINING = 4010

# §7 error codes.
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
UNKNOWN_EVENT = "unknown_event"
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"  # a batch the store could not take (§4)

CLIENT_TYPES = ("hello", "events", "applied", "ping")
CONSENT = ("granted", "denied", "pending")
APPLIED_STATUS = ("applied", "delegated", "reverted", "refused", "failed")

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SITE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ProtocolError(Exception):
    """An inbound message that breaks the protocol: `code` (§7) and the offending `path`."""

    def __init__(self, code: str, path: str, msg: str) -> None:
        super().__init__(f"{path}: {msg}" if path else msg)
        self.code = code
        self.path = path
        self.msg = msg

    @property
    def detail(self) -> str:
        return str(self)


@dataclass
class Batch:
    """A validated event batch (§3) with each event's `seq` assigned from its position."""

    seq: int
    events: list[dict[str, Any]]  # known kinds only, cleaned, each with "seq"
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (path of `k`, kind) dropped

    @property
    def last(self) -> int:
        """The sequence number of the batch's last event, unknown kinds included."""
        return self.seq + self.size - 1

    size: int = 0


def _bad(path: str, msg: str) -> ProtocolError:
    return ProtocolError(BAD_MESSAGE, path, msg)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------- scalar checks
# Each takes the container, the field name and the container's path; `required` fields raise
# when absent, optional ones return None. The messages mirror the schema keywords.
#
# These are the reference checks. The event checkers below, which run for every event of every
# batch, first test the common well-formed value inline (exact type, in range) and call these
# only when that test fails: the call then raises the very error it always raised, or returns
# the value it always returned (an integral float as int). An inline test therefore accepts a
# subset of what its reference check accepts, never more, and yields the same value.


def _get(obj: dict, name: str, path: str, required: bool) -> Any:
    if name in obj:
        return obj[name]
    return _absent(path, name, required)


def _absent(path: str, name: str, required: bool) -> None:
    if required:
        raise _bad(_join(path, name), "required")
    return None


def _int(obj: dict, name: str, path: str, lo: int, hi: int = MAX_INT, required: bool = True) -> int | None:
    if name not in obj:
        return _absent(path, name, required)
    x = obj[name]
    # JSON has one number type: 3.0 is the integer 3 (as in JSON Schema's "integer").
    if type(x) is float and x.is_integer():
        x = int(x)
    if type(x) is not int or x < lo or x > hi:
        raise _bad(_join(path, name), f"expected integer >= {lo}" if hi == MAX_INT else f"expected integer {lo}..{hi}")
    return x


def _num(obj: dict, name: str, path: str, lo: float, hi: float, required: bool = True) -> float | int | None:
    if name not in obj:
        return _absent(path, name, required)
    x = obj[name]
    if type(x) not in (int, float) or not (lo <= x <= hi):
        raise _bad(_join(path, name), f"expected number {lo:g}..{hi:g}")
    return x


def _str(obj: dict, name: str, path: str, lo: int, hi: int, required: bool = True) -> str | None:
    if name not in obj:
        return _absent(path, name, required)
    x = obj[name]
    if type(x) is not str or not (lo <= len(x) <= hi):
        raise _bad(_join(path, name), f"expected string of {lo}..{hi} characters")
    return x


def _pattern(obj: dict, name: str, path: str, rx: re.Pattern, what: str) -> str:
    x = _get(obj, name, path, True)
    if type(x) is not str or rx.fullmatch(x) is None:
        raise _bad(_join(path, name), f"expected {what}")
    return x


def _enum(obj: dict, name: str, path: str, values: tuple, required: bool = True) -> Any:
    if name not in obj:
        return _absent(path, name, required)
    x = obj[name]
    if type(x) is not str or x not in values:
        raise _bad(_join(path, name), "expected one of " + ", ".join(values))
    return x


def _bool(obj: dict, name: str, path: str) -> bool | None:
    if name not in obj:
        return None
    x = obj[name]
    if type(x) is not bool:
        raise _bad(_join(path, name), "expected boolean")
    return x


def _object(x: Any, path: str) -> dict:
    if type(x) is not dict:
        raise _bad(path, "expected object" if path else "expected a JSON object")
    return x


def _plain_tags(x: Any) -> bool:
    """The inline test of `_tags`: a list of at most 16 strings of at most 64 characters."""
    if type(x) is not list or len(x) > 16:
        return False
    for tag in x:
        if type(tag) is not str or len(tag) > 64:
            return False
    return True


def _tags(obj: dict, path: str) -> list[str] | None:
    if "tags" not in obj:
        return None
    x = obj["tags"]
    if _plain_tags(x):
        return x
    # Refused: name the offending path (only now, so a good list costs no string building).
    p = _join(path, "tags")
    if type(x) is not list or len(x) > 16:
        raise _bad(p, "expected array of at most 16 tags")
    for i, tag in enumerate(x):
        if type(tag) is not str or len(tag) > 64:
            raise _bad(f"{p}[{i}]", "expected string of 0..64 characters")
    return x


# ---------------------------------------------------------------- events (§3.1)


def _element(ev: dict, path: str, out: dict) -> None:
    # Unrolled, with inline tests (see "scalar checks"): this runs for most events.
    if "item" in ev:
        x = ev["item"]
        if type(x) is not str or not 0 < len(x) <= 128:
            x = _str(ev, "item", path, 1, 128)
        out["item"] = x
    if "slot" in ev:
        x = ev["slot"]
        if type(x) is not str or not 0 < len(x) <= 128:
            x = _str(ev, "slot", path, 1, 128)
        out["slot"] = x
    if "el" in ev:
        x = ev["el"]
        if type(x) is not str or len(x) > 128:
            x = _str(ev, "el", path, 0, 128)
        out["el"] = x
    if "tags" in ev:
        x = ev["tags"]
        out["tags"] = x if _plain_tags(x) else _tags(ev, path)


def _view_item(it: Any, path: str) -> dict[str, Any]:
    it = _object(it, path)
    entry = {"key": _str(it, "key", path, 1, 128)}
    tags = _tags(it, path)
    if tags is not None:
        entry["tags"] = tags
    slot = _str(it, "slot", path, 1, 128, required=False)
    if slot is not None:
        entry["slot"] = slot
    return entry


def _plain_view_item(it: Any) -> dict[str, Any] | None:
    """`_view_item` for a well-formed item, without a path; None for anything it would look into.

    A view lists up to 200 items: this saves formatting a path and five calls for each.
    """
    if type(it) is not dict:
        return None
    key = it.get("key")
    if type(key) is not str or not 0 < len(key) <= 128:
        return None
    entry = {"key": key}
    if "tags" in it:
        tags = it["tags"]
        if not _plain_tags(tags):
            return None
        entry["tags"] = tags
    if "slot" in it:
        slot = it["slot"]
        if type(slot) is not str or not 0 < len(slot) <= 128:
            return None
        entry["slot"] = slot
    return entry


def _view(ev: dict, path: str, out: dict) -> None:
    out["url"] = _str(ev, "url", path, 0, 2048)
    title = _str(ev, "title", path, 0, 256, required=False)
    if title is not None:
        out["title"] = title
    if "items" in ev:
        items = ev["items"]
        p = _join(path, "items")
        if type(items) is not list or len(items) > 200:
            raise _bad(p, "expected array of at most 200 items")
        clean = []
        for i, it in enumerate(items):
            entry = _plain_view_item(it)
            clean.append(entry if entry is not None else _view_item(it, f"{p}[{i}]"))
        out["items"] = clean
    via = _enum(ev, "via", path, VIEW_VIA, required=False)
    if via is not None:
        out["via"] = via


# hover, scroll, dwell and click are nearly every event the tracker sends: their fields are
# tested inline, with the reference check as the fallback (see "scalar checks"). A missing
# required field reads as None, fails the inline test, and the reference check says "required".


def _hover(ev: dict, path: str, out: dict) -> None:
    _element(ev, path, out)
    x = ev.get("dur")
    if type(x) is not int or not 0 <= x <= MAX_INT:
        x = _int(ev, "dur", path, 0)
    out["dur"] = x
    x = ev.get("phase")
    if type(x) is not str or x not in HOVER_PHASE:
        x = _enum(ev, "phase", path, HOVER_PHASE)
    out["phase"] = x


SPEED_CAP = 1_000_000  # px/s


def _speed(ev: dict, path: str) -> float:
    """`scroll.speed`: a number >= 0. A real gesture can measure faster than the cap (the End key
    on a very long page): above it, it is the cap, not a reason to refuse the batch."""
    x = ev.get("speed")
    if type(x) in (int, float) and x > SPEED_CAP:
        return SPEED_CAP
    return _num(ev, "speed", path, 0, SPEED_CAP)


def _scroll(ev: dict, path: str, out: dict) -> None:
    x = ev.get("depth")
    if (type(x) is not int and type(x) is not float) or not 0 <= x <= 100:  # NaN fails the range too
        x = _num(ev, "depth", path, 0, 100)
    out["depth"] = x
    x = ev.get("speed")
    if (type(x) is not int and type(x) is not float) or not 0 <= x <= SPEED_CAP:
        x = _speed(ev, path)
    out["speed"] = x
    if "dir" in ev:
        x = ev["dir"]
        if type(x) is not str or x not in SCROLL_DIR:
            x = _enum(ev, "dir", path, SCROLL_DIR)
        out["dir"] = x


def _dwell(ev: dict, path: str, out: dict) -> None:
    _element(ev, path, out)
    x = ev.get("ms")
    if type(x) is not int or not 0 <= x <= MAX_INT:
        x = _int(ev, "ms", path, 0)
    out["ms"] = x


def _click(ev: dict, path: str, out: dict) -> None:
    _element(ev, path, out)
    if "rage" in ev:
        out["rage"] = _bool(ev, "rage", path)
    if "dead" in ev:
        out["dead"] = _bool(ev, "dead", path)


def _custom(ev: dict, path: str, out: dict) -> None:
    out["name"] = _str(ev, "name", path, 1, 64)
    if "props" in ev:
        p = _join(path, "props")
        props = _object(ev["props"], p)
        if len(props) > 32:
            raise _bad(p, "expected at most 32 properties")
        for key, value in props.items():
            if len(key) > 64:
                raise _bad(p, f"property name longer than 64 characters: {key[:16]}...")
            t = type(value)
            if t is str:
                if len(value) > 256:
                    raise _bad(_join(p, key), "expected string of 0..256 characters")
            elif t not in (int, float, bool) and value is not None:
                raise _bad(_join(p, key), "expected a scalar (string, number, boolean or null)")
        out["props"] = props


VIEW_VIA = ("push", "replace", "pop", "hash", "bfcache")
HOVER_PHASE = ("intent", "end")
SCROLL_DIR = ("up", "down")
FORM_EVENTS = ("focus", "blur", "change", "submit")


def _engage(ev: dict, path: str, out: dict) -> None:
    out["ms"] = _int(ev, "ms", path, 0)


def _read(ev: dict, path: str, out: dict) -> None:
    _element(ev, path, out)
    out["ms"] = _int(ev, "ms", path, 0)
    out["words"] = _int(ev, "words", path, 0)
    out["speed"] = _num(ev, "speed", path, 0, 1_000_000)


def _form(ev: dict, path: str, out: dict) -> None:
    # Names only, never values (PROTOCOL §3.1): unknown fields such as a value are dropped.
    out["ev"] = _enum(ev, "ev", path, FORM_EVENTS)
    for name in ("field", "form"):
        v = _str(ev, name, path, 1, 128, required=False)
        if v is not None:
            out[name] = v


def _keys(ev: dict, path: str, out: dict) -> None:
    out["field"] = _str(ev, "field", path, 1, 128)
    form = _str(ev, "form", path, 1, 128, required=False)
    if form is not None:
        out["form"] = form
    out["n"] = _int(ev, "n", path, 0)
    out["mean"] = _num(ev, "mean", path, 0, 3_600_000)


def _pointer(ev: dict, path: str, out: dict) -> None:
    out["cols"] = _int(ev, "cols", path, 1)
    out["row"] = _int(ev, "row", path, 1)
    p = _join(path, "cells")
    cells = ev.get("cells")
    if type(cells) is not list or len(cells) > 200:
        raise _bad(p, "expected array of at most 200 cells")
    for i, cell in enumerate(cells):
        if type(cell) is not list or len(cell) != 3 or any(type(c) is not int or c < 0 for c in cell):
            raise _bad(f"{p}[{i}]", "expected [column, row, count] of integers >= 0")
    out["cells"] = cells


EVENT_KINDS = {
    "engage": _engage,
    "read": _read,
    "form": _form,
    "keys": _keys,
    "pointer": _pointer,
    "view": _view,
    "hover": _hover,
    "scroll": _scroll,
    "dwell": _dwell,
    "click": _click,
    "custom": _custom,
}


# "events[0]", "events[1]", ...: built once rather than formatted for every event of every batch.
_EVENT_PATHS = tuple(f"events[{i}]" for i in range(256))


def _events(msg: dict, max_batch: int) -> Batch:
    seq = msg.get("seq")
    if type(seq) is not int or not 1 <= seq <= MAX_INT:
        seq = _int(msg, "seq", "", 1)
    events = _get(msg, "events", "", True)
    if type(events) is not list or not (1 <= len(events) <= max_batch):
        raise _bad("events", f"expected array of 1..{max_batch} events")
    n = len(events)
    paths = _EVENT_PATHS if n <= len(_EVENT_PATHS) else [f"events[{i}]" for i in range(n)]
    kinds = EVENT_KINDS
    clean: list[dict[str, Any]] = []
    unknown: list[tuple[str, str]] = []
    for i, ev in enumerate(events):
        path = paths[i]
        if type(ev) is not dict:
            _object(ev, path)  # raises
        # Inline tests for the usual event (a known kind, an integer timestamp); anything else
        # takes the reference checks, in the same order: `k` is judged before `ts`.
        kind = ev.get("k")
        ts = ev.get("ts")
        check = kinds.get(kind) if type(kind) is str else None
        if check is None or type(ts) is not int or not 0 <= ts <= MAX_INT:
            kind = _str(ev, "k", path, 1, 32)
            ts = _int(ev, "ts", path, 0)
            check = kinds.get(kind)
            if check is None:
                unknown.append((f"{path}.k", kind))
                continue
        out: dict[str, Any] = {"k": kind, "ts": ts}
        check(ev, path, out)
        out["seq"] = seq + i
        clean.append(out)
    return Batch(seq=seq, events=clean, unknown=unknown, size=n)


# ---------------------------------------------------------------- messages


@dataclass
class Hello:
    site: str
    vid: str
    sid: str
    consent: str
    page: dict[str, Any]
    pseq: int


@dataclass
class Applied:
    id: str
    pseq: int
    status: str
    ms: float | None
    reason: str | None


def _hello(msg: dict) -> Hello:
    if msg.get("v") != VERSION or type(msg.get("v")) is not int:
        if "v" not in msg:
            raise _bad("v", "required")
        raise _bad("v", f"expected {VERSION}")
    site = _pattern(msg, "site", "", _SITE, "site key [A-Za-z0-9_-]{1,64}")
    vid = _pattern(msg, "vid", "", _ID, "id [A-Za-z0-9_-]{8,64}")
    sid = _pattern(msg, "sid", "", _ID, "id [A-Za-z0-9_-]{8,64}")
    consent = _enum(msg, "consent", "", CONSENT)
    page_in = _object(_get(msg, "page", "", True), "page")
    page = {"url": _str(page_in, "url", "page", 0, 2048)}
    for name, hi in (("title", 256), ("ref", 2048)):
        v = _str(page_in, name, "page", 0, hi, required=False)
        if v is not None:
            page[name] = v
    for name in ("vw", "vh"):
        v = _int(page_in, name, "page", 0, 100_000, required=False)
        if v is not None:
            page[name] = v
    _int(msg, "ack", "", 0, required=False)
    pseq = _int(msg, "pseq", "", 0, required=False) or 0
    return Hello(site=site, vid=vid, sid=sid, consent=consent, page=page, pseq=pseq)


def _applied(msg: dict) -> Applied:
    pid = _str(msg, "id", "", 1, 256)
    pseq = _int(msg, "pseq", "", 1)
    status = _enum(msg, "status", "", APPLIED_STATUS)
    ms = _num(msg, "ms", "", 0, 3_600_000, required=False)
    reason = _str(msg, "reason", "", 0, 256, required=False)
    return Applied(id=pid, pseq=pseq, status=status, ms=ms, reason=reason)


def decode(text: str | bytes) -> Any:
    """Parse one frame; `bad_json` when it is not JSON (§7).

    orjson parses a batch ~1.8x faster than ujson (and floats exactly); what it refuses goes to
    ujson, which decides (`jsonfast.loads`), so what is accepted and the error text of what is not
    are ujson's. A lone UTF-16 surrogate in a string (what a page's title cut in the middle of an
    emoji becomes) is replaced by U+FFFD rather than costing the batch; NaN and Infinity are
    `bad_json`."""
    try:
        return jsonfast.loads(text, repair=True)
    except (ValueError, OverflowError) as exc:
        raise ProtocolError(BAD_JSON, "", f"not valid JSON ({exc})") from None


def encode(msg: dict) -> str:
    return ujson.dumps(msg, ensure_ascii=False, escape_forward_slashes=False)


def validate_client_message(obj: Any, max_batch: int = 100) -> tuple[str, Any]:
    """Check a decoded client message; returns (t, Hello | Batch | Applied | None).

    Raises ProtocolError naming the first offending path.
    """
    msg = _object(obj, "")
    t = msg.get("t")
    if "t" not in msg:
        raise _bad("t", "required")
    if type(t) is not str:
        raise _bad("t", "expected string")
    if t == "events":
        return t, _events(msg, max_batch)
    if t == "ping":
        return t, None
    if t == "applied":
        return t, _applied(msg)
    if t == "hello":
        return t, _hello(msg)
    raise ProtocolError(UNKNOWN_TYPE, "t", f"unknown message type {t[:32]!r}")


@dataclass
class Beacon:
    site: str
    vid: str
    sid: str
    consent: str
    batch: Batch


def validate_beacon(obj: Any, max_batch: int = 100) -> Beacon:
    """The §3.2 beacon body: a batch plus the identity (and optional consent, default granted)."""
    msg = _object(obj, "")
    site = _pattern(msg, "site", "", _SITE, "site key [A-Za-z0-9_-]{1,64}")
    vid = _pattern(msg, "vid", "", _ID, "id [A-Za-z0-9_-]{8,64}")
    sid = _pattern(msg, "sid", "", _ID, "id [A-Za-z0-9_-]{8,64}")
    consent = _enum(msg, "consent", "", CONSENT, required=False) or "granted"
    return Beacon(site=site, vid=vid, sid=sid, consent=consent, batch=_events(msg, max_batch))
