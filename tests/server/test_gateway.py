"""`/v1/stream` against a real uvicorn server and a real WebSocket client (PROTOCOL.md §1-§7)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from .helpers import (DEMO_RULES, TOKEN, TS, closed_with, connect, hello, hover, ids, make_settings,
                      open_session, recv, send, until)


@pytest.fixture
def server(live_server, tmp_path):
    return live_server(make_settings(tmp_path, rules_file=DEMO_RULES))


def stats(url, sid=None):
    params = {"sid": sid} if sid else {}
    return httpx.get(url + "/v1/admin/stats", params=params, headers={"authorization": f"Bearer {TOKEN}"}).json()


# ---------------------------------------------------------------- happy path


async def test_hello_is_answered_with_welcome_carrying_ack_heartbeat_limits_and_pseq(server):
    vid, sid = ids()
    ws, welcome = await open_session(server, vid, sid)
    assert welcome == {"t": "welcome", "v": 1, "sid": sid, "ack": 0, "hb": 25000,
                       "limits": {"frame": 65536, "batch": 100}, "pseq": 0}
    await ws.close()


async def test_hover_longer_than_threshold_is_acked_then_emphasises_the_item(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p3")]})
    assert await recv(ws) == {"t": "ack", "seq": 1}
    patch = await recv(ws)
    assert patch["t"] == "patch" and patch["pseq"] == 1
    assert patch["patch"]["target"] == {"item": "p3"}
    assert {"op": "addClass", "class": "ma-emphasis"} in patch["patch"]["ops"]
    assert patch["patch"]["cause"] == 1
    await ws.close()


async def test_short_hover_is_acked_without_a_patch(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p3", dur=300, phase="end")]})
    assert await recv(ws) == {"t": "ack", "seq": 1}
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}  # nothing was queued between ack and pong
    await ws.close()


async def test_resent_batch_is_acked_again_but_stored_once(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    batch = {"t": "events", "seq": 1, "events": [hover("p1", 100, "end"), hover("p2", 100, "end")]}
    await send(ws, batch)
    assert await recv(ws) == {"t": "ack", "seq": 2}
    await send(ws, batch)
    assert await recv(ws) == {"t": "ack", "seq": 2}
    # A resend overlapping the stored range keeps only the new event (seq 3).
    await send(ws, {"t": "events", "seq": 2, "events": [hover("p2", 100, "end"), hover("p4", 100, "end")]})
    assert await recv(ws) == {"t": "ack", "seq": 3}
    assert stats(server, sid)["sessions"] == {sid: 3}
    records = [r for r in server.app.state.log.read() if r["sid"] == sid]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["vid"] == vid and records[0]["k"] == "hover" and "at" in records[0]
    await ws.close()


async def test_reconnect_welcome_carries_the_stored_ack_so_the_client_resends_only_the_rest(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")] * 5})
    assert (await recv(ws))["seq"] == 5
    await ws.close()
    ws2, welcome = await open_session(server, vid, sid)
    assert welcome["ack"] == 5
    await ws2.close()


async def test_patch_sequence_numbers_continue_across_reconnects(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1")]})
    assert (await until(ws, "patch"))["pseq"] == 1
    await ws.close()
    ws2, _ = await open_session(server, vid, sid, pseq=1)
    await send(ws2, {"t": "events", "seq": 2, "events": [hover("p2")]})
    assert (await until(ws2, "patch"))["pseq"] == 2
    await ws2.close()


async def test_ping_is_answered_with_pong(server):
    ws, _ = await open_session(server, *ids())
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}
    await ws.close()


async def test_applied_reports_fill_the_event_to_paint_histogram(server):
    ws, _ = await open_session(server, *ids())
    for ms in (3.4, 12.0, 40.0):
        await send(ws, {"t": "applied", "id": "hover-emphasis:p1", "pseq": 1, "status": "applied", "ms": ms})
    await send(ws, {"t": "applied", "id": "x:y", "pseq": 2, "status": "refused", "reason": "unknown op"})
    await send(ws, {"t": "ping"})
    await recv(ws)
    s = stats(server)
    assert s["reports"] == {"applied": 3, "refused": 1}
    lat = s["latency"]
    assert lat["count"] == 3 and lat["max_ms"] == 40.0 and lat["p50_ms"] == 12.0
    assert {"le": 5, "count": 1} in lat["buckets"] and {"le": 50, "count": 3} in lat["buckets"]
    await ws.close()


async def test_consent_denied_events_are_acked_but_neither_stored_nor_evaluated(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid, consent="denied")
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1")]})
    assert await recv(ws) == {"t": "ack", "seq": 1}
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}  # no patch
    assert stats(server, sid)["sessions"] == {sid: 0}
    await ws.close()


# ---------------------------------------------------------------- §2.1 before accept


@pytest.mark.parametrize("origin", ["http://evil.test", "http://other.test", None])
async def test_foreign_or_missing_origin_is_refused_with_403_before_accept(server, origin):
    with pytest.raises(InvalidStatus) as caught:
        async with connect(server, origin=origin):
            pass
    assert caught.value.response.status_code == 403
    body = json.loads(caught.value.response.body)
    assert body["error"] == "origin_not_allowed"


async def test_unknown_site_is_refused_with_403(server):
    with pytest.raises(InvalidStatus) as caught:
        async with connect(server, path="/v1/stream?site=nope&v=1"):
            pass
    assert caught.value.response.status_code == 403
    assert json.loads(caught.value.response.body)["error"] == "unknown_site"


async def test_unsupported_version_closes_4001_with_a_readable_reason(server):
    async with connect(server, path="/v1/stream?site=demo&v=2") as ws:
        assert await closed_with(ws) == (4001, "unsupported protocol version 2; server speaks 1")


# ---------------------------------------------------------------- §2.2 hello


async def test_message_other_than_hello_first_closes_4002(server):
    async with connect(server) as ws:
        await send(ws, {"t": "ping"})
        assert await closed_with(ws) == (4002, "expected hello")


async def test_malformed_hello_closes_4002_naming_the_field(server):
    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello("short", sid))
        assert await closed_with(ws) == (4002, "bad hello: vid: expected id [A-Za-z0-9_-]{8,64}")


async def test_second_hello_closes_4002(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, hello(vid, sid))
    assert await closed_with(ws) == (4002, "expected hello")


async def test_hello_for_another_site_closes_4005(server):
    async with connect(server) as ws:
        await send(ws, hello(*ids(), site="other"))
        assert await closed_with(ws) == (4005, "site mismatch")


async def test_no_hello_in_time_closes_4008(live_server, tmp_path):
    url = live_server(make_settings(tmp_path, hello_timeout_s=0.3))
    async with connect(url) as ws:
        assert await closed_with(ws) == (4008, "timeout")


async def test_silent_connection_closes_4008_after_three_heartbeats(live_server, tmp_path):
    url = live_server(make_settings(tmp_path, heartbeat_ms=200))
    ws, welcome = await open_session(url, *ids())
    assert welcome["hb"] == 200
    assert await closed_with(ws) == (4008, "timeout")


# ---------------------------------------------------------------- §7 bad input


async def test_bad_json_gets_an_error_and_the_connection_stays_open(server):
    ws, _ = await open_session(server, *ids())
    await send(ws, '{"t": "events", ')
    err = await recv(ws)
    assert err["t"] == "error" and err["code"] == "bad_json"
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}
    await ws.close()


async def test_schema_violation_error_names_the_path_and_the_batch_is_not_acked(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    events = [hover("p1", 100, "end")] * 3 + [dict(hover(), dur=-1)]
    await send(ws, {"t": "events", "seq": 1, "events": events})
    assert await recv(ws) == {"t": "error", "code": "bad_message", "detail": "events[3].dur: expected integer >= 0"}
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}
    assert stats(server, sid)["sessions"] == {sid: 0}
    await ws.close()


async def test_unknown_type_gets_unknown_type_error(server):
    ws, _ = await open_session(server, *ids())
    await send(ws, {"t": "subscribe"})
    err = await recv(ws)
    assert err["code"] == "unknown_type" and err["detail"].startswith("t: ")
    await ws.close()


async def test_unknown_event_kind_is_reported_and_the_rest_of_the_batch_kept(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [{"k": "gaze", "ts": TS, "x": 0.4}, hover("p1", 100, "end")]})
    err = await recv(ws)
    assert err == {"t": "error", "code": "unknown_event", "detail": "events[0].k: unknown event kind 'gaze'; dropped"}
    assert await recv(ws) == {"t": "ack", "seq": 2}
    assert stats(server, sid)["sessions"] == {sid: 1}
    await ws.close()


async def test_ten_bad_messages_close_4003(server):
    ws, _ = await open_session(server, *ids())
    for _ in range(10):
        await send(ws, "not json")
    code, reason = await closed_with(ws)
    assert (code, reason) == (4003, "too many bad messages")


async def test_frame_over_the_limit_closes_1009(server):
    ws, _ = await open_session(server, *ids())
    await send(ws, json.dumps({"t": "ping", "pad": "x" * 70_000}))
    assert await closed_with(ws) == (1009, "frame too large")  # PROTOCOL §7's reason


async def test_binary_frame_closes_1003(server):
    ws, _ = await open_session(server, *ids())
    await ws.send(b"\x00\x01")
    assert await closed_with(ws) == (1003, "binary frames not supported")


async def test_flood_is_rate_limited_then_closed_4004(live_server, tmp_path):
    url = live_server(make_settings(tmp_path, rate_per_s=5, rate_burst=5, flood_strikes=5))
    ws, _ = await open_session(url, *ids())
    for _ in range(20):
        await send(ws, {"t": "ping"})
    seen = []
    code, reason = None, None
    try:
        while True:
            seen.append(await recv(ws))
    except Exception:
        code, reason = await closed_with(ws)
    assert seen[:5] == [{"t": "pong"}] * 5
    assert {"t": "error", "code": "rate_limited", "detail": "too many messages; the message was dropped"} in seen
    assert (code, reason) == (4004, "flood")


async def test_a_rate_limited_batch_closes_1013_so_no_later_batch_is_acked_past_it(live_server, tmp_path):
    """The dropped batch (seq 3) is followed on the wire by seq 4; were seq 4 stored, the
    cumulative ack would pass 3 and its resend would be a duplicate: 3 would be lost."""
    url = live_server(make_settings(tmp_path, rate_per_s=0.001, rate_burst=2))
    vid, sid = ids()
    ws, _ = await open_session(url, vid, sid)
    for seq in (1, 2, 3, 4):
        await send(ws, {"t": "events", "seq": seq, "events": [hover("p1", 100, "end")]})
    assert await recv(ws) == {"t": "ack", "seq": 1}
    assert await recv(ws) == {"t": "ack", "seq": 2}
    err = await recv(ws)
    assert err["t"] == "error" and err["code"] == "rate_limited"
    assert await closed_with(ws) == (1013, "rate limited")
    ws, welcome = await open_session(url, vid, sid)
    assert welcome["ack"] == 2
    await send(ws, {"t": "events", "seq": 3, "events": [hover("p1", 100, "end")] * 2})
    assert await recv(ws) == {"t": "ack", "seq": 4}
    await ws.close()


async def test_a_misbehaving_client_does_not_affect_other_connections(server):
    good, _ = await open_session(server, *ids())
    bad, _ = await open_session(server, *ids())
    await bad.send(b"binary")
    assert (await closed_with(bad))[0] == 1003
    await send(good, {"t": "events", "seq": 1, "events": [hover("p2")]})
    assert await recv(good) == {"t": "ack", "seq": 1}
    assert (await recv(good))["t"] == "patch"
    await good.close()


async def test_shutdown_drains_open_sockets_with_4010(live_server, tmp_path):
    url = live_server(make_settings(tmp_path))
    ws, _ = await open_session(url, *ids())
    stopper = asyncio.get_running_loop().run_in_executor(None, url.stop)
    assert await closed_with(ws) == (4010, "draining")  # §7: reconnect elsewhere, at once
    await stopper


async def test_first_frame_not_json_closes_4002_expected_hello(server):
    async with connect(server) as ws:
        await send(ws, "{hello")
        assert await closed_with(ws) == (4002, "expected hello")


async def test_extended_event_kinds_are_stored_without_values(server):
    # PROTOCOL §3.1: engage/read/form/keys/pointer and view.via are v1 kinds; a form event never
    # carries a value even if a broken tracker sends one (unknown fields are dropped).
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [
        {"k": "view", "ts": TS, "url": "/shop?page=2", "items": [], "via": "push"},
        {"k": "engage", "ts": TS, "ms": 42000},
        {"k": "read", "ts": TS, "slot": "sec-2", "ms": 8200, "words": 240, "speed": 35},
        {"k": "form", "ts": TS, "ev": "change", "field": "email", "value": "secret@example.com"},
        {"k": "keys", "ts": TS, "field": "email", "n": 18, "mean": 140},
        {"k": "pointer", "ts": TS, "cols": 20, "row": 100, "cells": [[3, 1, 4]]},
    ]})
    assert await recv(ws) == {"t": "ack", "seq": 6}
    assert stats(server, sid)["sessions"] == {sid: 6}
    await ws.close()


async def test_an_open_session_whose_visitor_the_store_cap_dropped_keeps_working(live_server, tmp_path):
    # store_visitors=1: each visitor's batch drops the other. The dropped session's next batch is
    # acked and evaluated afresh, and its patches keep counting up on the open socket.
    url = live_server(make_settings(tmp_path, rules_file=DEMO_RULES, store_visitors=1))
    (va, sa), (vb, sb) = ids(), ids()
    a, _ = await open_session(url, va, sa)
    b, _ = await open_session(url, vb, sb)
    await send(a, {"t": "events", "seq": 1, "events": [hover("p1")]})
    assert (await until(a, "patch"))["pseq"] == 1
    await send(b, {"t": "events", "seq": 1, "events": [hover("p2")]})
    assert (await until(b, "patch"))["pseq"] == 1
    store = url.app.state.store
    assert len(store) == 1 and (await store.load(va, sa)).profile is None  # a was dropped
    await send(a, {"t": "events", "seq": 1, "events": [hover("p1")]})  # a resend: still a duplicate
    assert await recv(a) == {"t": "ack", "seq": 1}
    assert (await store.load(va, sa)).profile is None
    await send(a, {"t": "events", "seq": 2, "events": [hover("p3")]})
    assert await recv(a) == {"t": "ack", "seq": 2}
    patch = await recv(a)
    assert patch["t"] == "patch" and patch["pseq"] == 2 and patch["patch"]["target"] == {"item": "p3"}
    assert (await store.load(va, sa)).ack == 2
    await a.close()
    await b.close()


async def test_a_second_hello_closes_4002_even_when_malformed(server):
    for second in ({"t": "hello"}, {"t": "hello", "v": 1, "consent": "maybe"}):
        ws, _ = await open_session(server, *ids())
        await send(ws, second)
        assert await closed_with(ws) == (4002, "expected hello"), second


async def test_acks_never_go_back_when_consent_is_not_granted(server):
    ws, _ = await open_session(server, *ids(), consent="denied")
    await send(ws, {"t": "events", "seq": 10, "events": [hover("p1", 100, "end")]})
    assert await recv(ws) == {"t": "ack", "seq": 10}
    await send(ws, {"t": "events", "seq": 3, "events": [hover("p1", 100, "end")]})
    assert await recv(ws) == {"t": "ack", "seq": 10}
    await ws.close()
