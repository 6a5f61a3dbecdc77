"""What happens when time passes, parts fail or input is hostile: the process keeps serving."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from microadjust import engine as real_engine
from microadjust import protocol
from microadjust.store.memory import MemoryStore
from microadjust.store.redis import StoreUnavailable

from .helpers import TS, closed_with, hover, ids, make_settings, open_session, recv, send, until

SHALLOW_FOR_HALF_A_SECOND = {"version": 1, "rules": [{
    "id": "still-on-top", "description": "Still above the middle half a second later.",
    "when": {"<": [{"var": "session.scroll.depth"}, 50]}, "for": 500,
    "target": {"slot": "explore"}, "ops": [{"op": "show"}], "ttl": 0,
}]}


async def test_idle_connection_gets_a_for_delayed_patch_without_sending_anything(live_server, tmp_path):
    url = live_server(make_settings(tmp_path, tick_ms=100), rules_doc=SHALLOW_FOR_HALF_A_SECOND)
    ws, _ = await open_session(url, *ids())
    await send(ws, {"t": "events", "seq": 1, "events": [{"k": "scroll", "ts": TS, "depth": 20, "speed": 300}]})
    assert await recv(ws) == {"t": "ack", "seq": 1}
    patch = await until(ws, "patch", timeout=3)  # no further client message: a server tick
    assert patch["patch"]["target"] == {"slot": "explore"} and patch["pseq"] == 1
    await ws.close()


class ExplodingEngine:
    """The real engine, except that evaluating a click raises (a server bug)."""

    compile_rules = staticmethod(real_engine.compile_rules)
    RuleSetError = real_engine.RuleSetError
    validate_patch = staticmethod(real_engine.validate_patch)

    @staticmethod
    def evaluate(profile, events, now, ruleset, consent="granted"):
        if any(e["k"] == "click" for e in events):
            raise ZeroDivisionError("bug")
        return real_engine.evaluate(profile, events, now, ruleset, consent)


async def test_an_engine_bug_closes_only_that_connection_with_1011(live_server, tmp_path):
    url = live_server(make_settings(tmp_path), engine=ExplodingEngine(), rules_doc={"version": 1, "rules": []})
    victim, _ = await open_session(url, *ids())
    bystander, _ = await open_session(url, *ids())
    await send(victim, {"t": "events", "seq": 1, "events": [{"k": "click", "ts": TS}]})
    assert await closed_with(victim) == (1011, "internal error")
    await send(bystander, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")]})
    assert await recv(bystander) == {"t": "ack", "seq": 1}
    await bystander.close()


class StoreDown(MemoryStore):
    """Refuses its first `failures` commits (Redis unreachable with a full write buffer, a full
    disk), then is back."""

    failures = 1

    async def commit(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("redis unreachable and write buffer full")
        return await super().commit(*args, **kwargs)


async def test_a_batch_the_store_cannot_take_is_not_acked_and_nothing_after_it_is_read(live_server, tmp_path):
    """PROTOCOL §4: `unavailable`, close 1013. The batch sent right behind the refused one is
    not read, so it cannot be acked past the hole; after the reconnect both are stored."""
    store = StoreDown()
    url = live_server(make_settings(tmp_path), store=store)
    vid, sid = ids()
    ws, _ = await open_session(url, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")]})
    # The store is back for this one: stored, it would be acked past seq 1.
    await send(ws, {"t": "events", "seq": 2, "events": [hover("p2", 100, "end")]})
    err = await recv(ws)
    assert err["t"] == "error" and err["code"] == "unavailable"
    assert await closed_with(ws) == (1013, "not stored")
    ws, welcome = await open_session(url, vid, sid)
    assert welcome["ack"] == 0  # neither batch was stored: the tracker resends both, in order
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")] * 2})
    assert await recv(ws) == {"t": "ack", "seq": 2}
    await ws.close()


# Arbitrary JSON (RFC 8259: no NaN or Infinity, which are bad_json: test_input_hardening.py), biased
# towards the shapes of real messages so the checks get exercised deeply.
scalars = st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)
event_like = st.fixed_dictionaries({"k": st.sampled_from(["view", "hover", "scroll", "dwell", "click", "custom", "form", "gaze"]),
                                    "ts": scalars}, optional={"dur": scalars, "phase": scalars, "depth": scalars, "speed": scalars,
                                                               "ms": scalars, "item": scalars, "tags": json_values, "name": scalars,
                                                               "props": json_values, "items": json_values, "url": scalars})
message_like = st.fixed_dictionaries({"t": st.sampled_from(["hello", "events", "applied", "ping", "nope"])},
                                     optional={"seq": scalars, "events": st.lists(event_like, max_size=3), "v": scalars,
                                               "vid": scalars, "sid": scalars, "site": scalars, "consent": scalars,
                                               "page": json_values, "id": scalars, "pseq": scalars, "status": scalars, "ms": scalars})


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, message_like))
def test_any_json_is_either_a_valid_message_or_a_protocol_error(value):
    text = json.dumps(value)
    try:
        t, body = protocol.validate_client_message(protocol.decode(text))
    except protocol.ProtocolError as exc:
        assert exc.code in (protocol.BAD_MESSAGE, protocol.UNKNOWN_TYPE)
        assert exc.detail
        return
    assert t in protocol.CLIENT_TYPES
    if t == "events":
        assert all(e["k"] in protocol.EVENT_KINDS and type(e["seq"]) is int for e in body.events)
