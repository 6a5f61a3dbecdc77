"""The inline tests of the hot event checks agree with the reference checks, field by field.

`protocol.py` tests the usual value of a hover/scroll/dwell/click/view field inline and calls the
reference check (`_int`, `_num`, `_str`, `_enum`, `_bool`, `_tags`) only when that test fails.
For every such field and a set of awkward values, validating a whole batch must give what the
reference check alone gives: the same value of the same type, or the same error at the same path.
(bench/experiments/validate_cost.py compares whole messages against an earlier revision.)
"""

from __future__ import annotations

import math

import pytest

from microadjust import protocol as P

MISSING = object()


class Sub(str):
    """A str subclass: never produced by JSON, refused by the exact type checks."""


VALUES = [
    MISSING, None, True, False, 0, 1, -1, 3.0, 3.5, -0.0, 100, 100.5, 1_000_000, 1_000_001,
    P.MAX_INT, P.MAX_INT + 1, float(P.MAX_INT + 1), math.nan, math.inf, -math.inf, "", "x",
    "a" * 64, "a" * 65, "a" * 128, "a" * 129, "end", "intent", "up", "down", Sub("end"),
    Sub("x"), [], ["a"], ["a" * 65], ["a"] * 16, ["a"] * 17, [None], [Sub("a")], {}, {"a": 1},
]

BASE = {
    "hover": {"k": "hover", "ts": 5, "item": "p1", "tags": ["a"], "dur": 10, "phase": "end"},
    "dwell": {"k": "dwell", "ts": 5, "item": "p1", "tags": ["a"], "ms": 10},
    "click": {"k": "click", "ts": 5, "item": "p1"},
    "scroll": {"k": "scroll", "ts": 5, "depth": 10, "speed": 10, "dir": "down"},
}
PATH = "events[1]"  # the mutated event is the second one of its batch

# (kind, field, the reference check of that field)
ELEMENT = [
    ("item", lambda ev: P._str(ev, "item", PATH, 1, 128, required=False)),
    ("slot", lambda ev: P._str(ev, "slot", PATH, 1, 128, required=False)),
    ("el", lambda ev: P._str(ev, "el", PATH, 0, 128, required=False)),
    ("tags", lambda ev: P._tags(ev, PATH)),
]
FIELDS = [(kind, name, ref) for kind in ("hover", "dwell", "click") for name, ref in ELEMENT] + [
    ("hover", "dur", lambda ev: P._int(ev, "dur", PATH, 0)),
    ("hover", "phase", lambda ev: P._enum(ev, "phase", PATH, ("intent", "end"))),
    ("dwell", "ms", lambda ev: P._int(ev, "ms", PATH, 0)),
    ("click", "rage", lambda ev: P._bool(ev, "rage", PATH)),
    ("scroll", "depth", lambda ev: P._num(ev, "depth", PATH, 0, 100)),
    ("scroll", "speed", lambda ev: P._speed(ev, PATH)),
    ("scroll", "dir", lambda ev: P._enum(ev, "dir", PATH, ("up", "down"), required=False)),
    ("scroll", "ts", lambda ev: P._int(ev, "ts", PATH, 0)),
]


def _outcome(fn):
    try:
        return "ok", fn()
    except P.ProtocolError as exc:
        return "error", (exc.code, exc.path, exc.msg, exc.detail)


def _same(a, b) -> bool:
    """Equal and of the same type, NaN equal to itself."""
    if type(a) is not type(b):
        return False
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.mark.parametrize("kind,name,ref", FIELDS, ids=[f"{k}.{n}" for k, n, _ in FIELDS])
def test_a_hot_field_is_judged_as_its_reference_check_judges_it(kind, name, ref):
    for value in VALUES:
        ev = dict(BASE[kind])
        if value is MISSING:
            ev.pop(name, None)
        else:
            ev[name] = value
        msg = {"t": "events", "seq": 3, "events": [BASE["dwell"], ev]}
        got = _outcome(lambda: P.validate_client_message(msg)[1].events[1])
        want = _outcome(lambda: ref(ev))
        assert got[0] == want[0], (name, value, got, want)
        if got[0] == "error":
            assert got == want, (name, value)
        elif want[1] is None:
            assert name not in got[1], (name, value)
        else:
            assert _same(got[1][name], want[1]), (name, value, got[1][name], want[1])


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_view_item_is_judged_as_the_reference_checks_judge_it(value):
    for name in ("key", "tags", "slot"):
        item = {"key": "p1", "tags": ["a"], "slot": "grid"}
        if value is MISSING:
            del item[name]
        else:
            item[name] = value
        ev = {"k": "view", "ts": 1, "url": "/", "items": [{"key": "p0"}, item]}
        got = _outcome(lambda: P.validate_client_message({"t": "events", "seq": 1, "events": [ev]})[1])
        want = _outcome(lambda: P._view_item(item, "events[0].items[1]"))
        if got[0] == "error":
            assert got == want, (name, value)
        else:
            assert want[0] == "ok" and got[1].events[0]["items"][1] == want[1], (name, value)


def test_an_integral_float_seq_and_timestamp_are_integers():
    msg = {"t": "events", "seq": 4.0, "events": [{"k": "scroll", "ts": 7.0, "depth": 1, "speed": 2}]}
    batch = P.validate_client_message(msg)[1]
    assert type(batch.seq) is int and type(batch.events[0]["ts"]) is int
    assert batch.events[0] == {"k": "scroll", "ts": 7, "depth": 1, "speed": 2, "seq": 4}


def test_an_unknown_kind_with_a_bad_timestamp_is_refused_before_it_is_skipped():
    msg = {"t": "events", "seq": 1, "events": [{"k": "future", "ts": -1}]}
    with pytest.raises(P.ProtocolError) as exc:
        P.validate_client_message(msg)
    assert (exc.value.path, exc.value.msg) == ("events[0].ts", "expected integer >= 0")


def test_a_batch_longer_than_the_precomputed_paths_names_its_events():
    events = [{"k": "engage", "ts": 1, "ms": 1}] * 300 + [{"k": "engage", "ts": 1, "ms": -1}]
    with pytest.raises(P.ProtocolError) as exc:
        P.validate_client_message({"t": "events", "seq": 1, "events": events}, max_batch=1000)
    assert exc.value.path == "events[300].ms"
