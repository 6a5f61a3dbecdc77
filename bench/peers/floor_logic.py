"""The peers' shared per-connection logic (Python side), line for line bench/peers/floor_logic.mjs.

Used by the Starlette/uvicorn peer and by the server-implementation experiment
(bench/experiments/ws_impls.py). It is the minimum a server must do for the benchmark workload:
parse, validate the fields the workload uses (PROTOCOL.md §2.2, §3), keep a tiny per-visitor
decayed-interest map, answer a cumulative ack (§4) and a patch (§5) when a hover intent makes an
item's interest cross EMPHASIS_THRESHOLD. microadjust does strictly more (full engine, guards,
store, event log).

`loads`/`dumps` are parameters so the experiment can compare JSON libraries on the same logic;
the defaults are the standard library's, which is what a team gets without choosing.
"""

from __future__ import annotations

import json
import re
import time
from typing import Callable

HALF_LIFE_MS = 1_800_000  # the demo rules' half-life: interest halves every 30 min
EMPHASIS_THRESHOLD = 1.0  # one hover intent of >= 2 s on a fresh item crosses it
INTENT_MIN_DUR = 2000  # the tracker's default intent threshold (ms)
MAX_ITEMS = 100  # interest entries kept per visitor, like the engine's MAX_ITEMS
MAX_EVENTS = 100  # PROTOCOL §2.3 limits.batch
KINDS = frozenset(("view", "hover", "scroll", "dwell", "click", "custom"))
ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
W_HOVER = 1.0
W_CLICK = 1.5

# visitor id -> {item: [score, t]}; shared by all connections of the process.
visitors: dict[str, dict[str, list]] = {}


def _decayed(entry, now: int) -> float:
    if not entry:
        return 0.0
    dt = now - entry[1]
    return entry[0] if dt <= 0 else entry[0] * 2.0 ** (-dt / HALF_LIFE_MS)


def _bump(items: dict, key: str, weight: float, now: int) -> tuple[float, float]:
    before = _decayed(items.get(key), now)
    after = before + weight
    items[key] = [after, now]
    if len(items) > MAX_ITEMS:
        weakest = min(items, key=lambda k: _decayed(items[k], now))
        del items[weakest]
    return before, after


def _is_int(x) -> bool:
    return type(x) is int


class Close(Exception):
    """Raised by the session when the connection must close with (code, reason)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class FloorSession:
    """One connection's state. `on_text` returns the frames to send; raises Close to close."""

    def __init__(self, site: str, loads: Callable = json.loads, dumps: Callable = json.dumps) -> None:
        self.site = site
        self.loads, self.dumps = loads, dumps
        self.hello = None
        self.items: dict = {}
        self.ack = 0
        self.pseq = 0
        self.bad = 0

    def _error(self, code: str, detail: str) -> list[str]:
        self.bad += 1
        if self.bad >= 10:
            raise Close(4003, "too many bad messages")
        return [self.dumps({"t": "error", "code": code, "detail": detail})]

    def on_text(self, text: str) -> list[str]:
        try:
            msg = self.loads(text)
        except ValueError:
            return self._error("bad_json", "frame is not valid JSON")
        if type(msg) is not dict or type(msg.get("t")) is not str:
            return self._error("bad_message", "t: expected string")
        if self.hello is None:
            if msg["t"] != "hello":
                raise Close(4002, "expected hello")
            vid, sid = msg.get("vid"), msg.get("sid")
            if (msg.get("v") != 1 or type(vid) is not str or type(sid) is not str
                    or not ID_RE.fullmatch(vid) or not ID_RE.fullmatch(sid)):
                raise Close(4002, "bad hello: v, vid or sid")
            if msg.get("site") != self.site:
                raise Close(4005, "site mismatch")
            self.hello = msg
            self.items = visitors.setdefault(vid, {})
            return [self.dumps({"t": "welcome", "v": 1, "sid": sid, "ack": self.ack, "hb": 25000,
                                "limits": {"frame": 65536, "batch": MAX_EVENTS}})]
        t = msg["t"]
        if t == "events":
            return self._events(msg)
        if t == "ping":
            return ['{"t":"pong"}']
        if t == "applied":
            return []
        if t == "hello":
            raise Close(4002, "expected hello")
        return self._error("unknown_type", f"t: {t[:32]}")

    def _events(self, msg: dict) -> list[str]:
        seq, events = msg.get("seq"), msg.get("events")
        if not _is_int(seq) or seq < 1:
            return self._error("bad_message", "seq: expected integer >= 1")
        if type(events) is not list or not 1 <= len(events) <= MAX_EVENTS:
            return self._error("bad_message", "events: expected 1..100 events")
        for i, ev in enumerate(events):
            if type(ev) is not dict or ev.get("k") not in KINDS or not _is_int(ev.get("ts")):
                return self._error("bad_message", f"events[{i}]: expected known k and integer ts")
        now = int(time.time() * 1000)
        patches = []
        for i, ev in enumerate(events):
            if seq + i <= self.ack:
                continue  # §3 de-duplication: a resend is never counted twice
            item = ev.get("item")
            if type(item) is not str:
                continue
            k = ev["k"]
            weight = 0.0
            if k == "hover" and ev.get("phase") == "intent" and _is_int(ev.get("dur")) and ev["dur"] >= INTENT_MIN_DUR:
                weight = W_HOVER
            elif k == "dwell" and _is_int(ev.get("ms")):
                weight = min(ev["ms"] / 5000, 2.0)
            elif k == "click":
                weight = W_CLICK
            if weight <= 0:
                continue
            before, after = _bump(self.items, item, weight, now)
            if k == "hover" and before < EMPHASIS_THRESHOLD <= after:
                patches.append({
                    "id": f"hover-emphasis:{item}", "rule": "hover-emphasis", "target": {"item": item},
                    "ops": [{"op": "addClass", "class": "ma-emphasis"}], "ttl": 30000, "priority": 10,
                    "cause": seq + i,
                })
        self.ack = max(self.ack, seq + len(events) - 1)
        out = [self.dumps({"t": "ack", "seq": self.ack})]
        for patch in patches:
            self.pseq += 1
            out.append(self.dumps({"t": "patch", "pseq": self.pseq, "patch": patch}))
        return out
