"""Resume in the embedded mode (PROTOCOL §2.3): a tab that reconnects to the same process gets the
patches it missed right after `welcome`, and `welcome.resume.complete` says whether that is all."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from microadjust import protocol as P
from microadjust.outbox import LocalOutbox, resume_from

from protocol.schemas import validator
from .helpers import TOKEN, TS, ids, make_settings, open_session, recv, send, until

# Every click on an item marks it: one patch per click, no cap, no cooldown.
CLICK_RULES = {
    "version": 1,
    "settings": {"max_adjustments": 1000, "cooldown_ms": 0},
    "rules": [{"id": "click-mark", "on": ["click"], "when": {"!!": [{"var": "event.item"}]}, "cooldown": 0,
               "target": {"item": "{{event.item}}"}, "ops": [{"op": "addClass", "class": "ma-clicked"}], "ttl": 0}],
}
WELCOME = validator("welcome")


def clicks(seq: int, n: int) -> dict:
    return {"t": "events", "seq": seq, "events": [{"k": "click", "ts": TS + i, "item": f"p{seq + i}"} for i in range(n)]}


@pytest.fixture
def server(live_server, tmp_path):
    return live_server(make_settings(tmp_path), rules_doc=CLICK_RULES)


async def patches_after(ws, n: int) -> list[dict]:
    return [await until(ws, "patch") for _ in range(n)]


async def nothing_more(ws) -> None:
    """The next message answers our ping: nothing was queued after welcome."""
    await send(ws, {"t": "ping"})
    assert await recv(ws) == {"t": "pong"}


async def test_reconnect_before_any_patch_has_nothing_to_resume(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await ws.close()
    ws, welcome = await open_session(server, vid, sid, pseq=0)
    assert welcome["pseq"] == 0 and "resume" not in welcome
    assert list(WELCOME.iter_errors(welcome)) == []
    await nothing_more(ws)
    await ws.close()


async def test_missed_patches_follow_welcome_and_recovery_is_complete(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, clicks(1, 3))
    sent = await patches_after(ws, 3)
    await ws.close()
    # The page applied only the first one before the socket dropped.
    ws, welcome = await open_session(server, vid, sid, pseq=1)
    assert welcome["pseq"] == 3
    assert welcome["resume"] == {"from": 1, "sent": 2, "complete": True}
    assert list(WELCOME.iter_errors(welcome)) == []
    assert [await recv(ws), await recv(ws)] == sent[1:]
    await nothing_more(ws)
    # Numbering goes on after the replayed ones.
    await send(ws, clicks(4, 1))
    assert (await until(ws, "patch"))["pseq"] == 4
    await ws.close()


async def test_up_to_date_reconnect_gets_no_resume(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, clicks(1, 2))
    await patches_after(ws, 2)
    await ws.close()
    ws, welcome = await open_session(server, vid, sid, pseq=2)
    assert welcome["pseq"] == 2 and "resume" not in welcome
    await nothing_more(ws)
    await ws.close()


async def test_more_missed_patches_than_the_bound_is_incomplete(live_server, tmp_path):
    url = live_server(make_settings(tmp_path, outbox_size=64), rules_doc=CLICK_RULES)
    vid, sid = ids()
    ws, _ = await open_session(url, vid, sid)
    await send(ws, clicks(1, 100))
    await send(ws, clicks(101, 30))
    sent = await patches_after(ws, 130)
    await ws.close()
    ws, welcome = await open_session(url, vid, sid, pseq=10)
    assert welcome["pseq"] == 130
    # The outbox keeps the last 64 (67..130); 11..66 are gone, so the client must not trust
    # that what it shows is current.
    assert welcome["resume"] == {"from": 10, "sent": 64, "complete": False}
    replayed = [await recv(ws) for _ in range(64)]
    assert replayed == sent[66:]
    await nothing_more(ws)
    await ws.close()


async def test_a_client_ahead_of_the_server_is_told_and_numbering_goes_on_above_it(server):
    """The server's state expired or was erased: hello.pseq 7 is more than it knows (0)."""
    vid, sid = ids()
    ws, welcome = await open_session(server, vid, sid, pseq=7)
    assert welcome["pseq"] == 7
    assert welcome["resume"] == {"from": 7, "sent": 0, "complete": False}
    await send(ws, clicks(1, 1))
    assert (await until(ws, "patch"))["pseq"] == 8
    await ws.close()
    # The floor was stored with the batch: a later reconnect is in step again.
    ws, welcome = await open_session(server, vid, sid, pseq=8)
    assert welcome["pseq"] == 8 and "resume" not in welcome
    await ws.close()


async def test_patches_decided_from_a_beacon_are_kept_for_resume(server):
    vid, sid = ids()
    body = {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": clicks(1, 2)["events"]}
    r = httpx.post(server + "/v1/events", content=json.dumps(body), headers={"origin": "http://page.test"})
    assert r.json() == {"ack": 2}
    ws, welcome = await open_session(server, vid, sid, pseq=0)
    assert welcome["resume"] == {"from": 0, "sent": 2, "complete": True}
    assert [(await recv(ws))["pseq"] for _ in range(2)] == [1, 2]
    await ws.close()


async def test_erasure_drops_the_outbox_and_export_shows_it(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, clicks(1, 1))
    patch = await until(ws, "patch")
    await ws.close()
    auth = {"authorization": f"Bearer {TOKEN}"}
    exported = httpx.get(f"{server}/v1/visitors/{vid}", headers=auth).json()
    assert exported["sessions"][sid]["outbox"] == [patch]
    assert httpx.delete(f"{server}/v1/visitors/{vid}", headers=auth).status_code == 204
    ws, welcome = await open_session(server, vid, sid, pseq=1)
    assert welcome["resume"] == {"from": 1, "sent": 0, "complete": False}
    await ws.close()


# ---------------------------------------------------------------- the outbox itself


def msg(pseq: int) -> dict:
    return {"t": "revert", "pseq": pseq, "id": f"r:{pseq}"}


def test_local_outbox_keeps_the_last_64_messages_of_a_session():
    box = LocalOutbox()
    for p in range(1, 101):
        box.record("v_visitor1", "s_session1", [msg(p)])
    recent = box.resume("v_visitor1", "s_session1", 90, current=100)
    assert [m["pseq"] for m in recent.messages] == list(range(91, 101)) and recent.complete
    old = box.resume("v_visitor1", "s_session1", 5, current=100)
    assert [m["pseq"] for m in old.messages] == list(range(37, 101)) and not old.complete


def test_local_outbox_keeps_messages_serialised():
    # A message as objects is a dozen dicts and lists that live as long as the session and that
    # every full collection walked; bytes are one object the collector never looks into.
    box = LocalOutbox()
    patch = {"t": "patch", "pseq": 1, "patch": {"id": "e:p1", "ops": [{"op": "emphasise", "sel": "[data-ma-item=\"p1\"]"}]}}
    box.record("v_visitor1", "s_session1", [patch, msg(2)])
    kept = box._boxes[("v_visitor1", "s_session1")][1]
    assert [type(m) for m in kept] == [bytes, bytes]
    assert box.messages("v_visitor1", "s_session1") == [patch, msg(2)]


def test_local_outbox_expires_and_evicts_the_least_recent_session():
    now = [0.0]
    box = LocalOutbox(size=4, ttl_s=60, sessions=2, clock=lambda: now[0])
    box.record("v_visitor1", "s_a", [msg(1)])
    box.record("v_visitor1", "s_b", [msg(1)])
    box.record("v_visitor1", "s_c", [msg(1)])  # evicts s_a
    assert box.messages("v_visitor1", "s_a") == [] and len(box) == 2
    assert not box.resume("v_visitor1", "s_a", 0, current=1).complete
    now[0] = 61.0
    assert box.messages("v_visitor1", "s_c") == []


def test_resume_reports_a_gap_and_a_pseq_the_server_never_issued():
    assert not resume_from([msg(1), msg(3)], 0, 3).complete  # 2 is missing
    assert not resume_from([], 7, 0).complete
    assert resume_from([], 0, 0).complete


def test_outbox_bounds_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        LocalOutbox(size=0)


async def test_concurrent_reconnects_of_two_sessions_are_kept_apart(server):
    (vid, sid1), (_, sid2) = ids(), ids()
    a, _ = await open_session(server, vid, sid1)
    b, _ = await open_session(server, vid, sid2)
    await send(a, clicks(1, 2))
    await send(b, clicks(1, 1))
    await asyncio.gather(patches_after(a, 2), patches_after(b, 1))
    await a.close()
    await b.close()
    a, wa = await open_session(server, vid, sid1, pseq=0)
    b, wb = await open_session(server, vid, sid2, pseq=0)
    assert wa["resume"]["sent"] == 2 and wb["resume"]["sent"] == 1
    await a.close()
    await b.close()


async def test_a_patch_committed_while_the_welcome_is_prepared_is_sent_once_after_it(server):
    # A batch of the session (another tab, or its beacon) is committed between this socket's
    # state read (the resume's starting point) and its welcome: the patch must reach this socket,
    # once, right after the welcome.
    vid, sid = ids()
    other, _ = await open_session(server, vid, sid)
    await send(other, clicks(1, 1))
    assert (await until(other, "patch"))["pseq"] == 1
    gateway, store = server.app.state.gateway, server.app.state.store
    load = store.load
    raced = []

    async def load_then_race(v, s):  # runs on the server's loop
        snap = await load(v, s)
        if s == sid and not raced:
            raced.append(True)
            _, batch = P.validate_client_message(clicks(2, 1), 100)
            result = await gateway.ingest.batch(vid, sid, "granted", batch)
            await gateway.distribute(vid, sid, result)  # as the beacon route does
        return snap

    store.load = load_then_race
    try:
        ws, welcome = await open_session(server, vid, sid, pseq=1)
    finally:
        store.load = load
    assert raced and welcome["pseq"] == 1  # what the state said when it was read
    patch = await recv(ws)
    assert patch["t"] == "patch" and patch["pseq"] == 2 and patch["patch"]["target"] == {"item": "p2"}
    await nothing_more(ws)
    assert (await until(other, "patch"))["pseq"] == 2  # the other tab got it too
    await ws.close()
    await other.close()


async def test_a_reconnected_socket_numbers_patches_above_its_welcome_when_the_store_forgets(live_server, tmp_path):
    """§2.3: on an open socket whose session the server forgets (here the embedded store's cap),
    the next patch is numbered above the last one that socket got, on the reconnect path too."""
    from .helpers import DEMO_RULES, hover, make_settings

    url = live_server(make_settings(tmp_path, rules_file=DEMO_RULES, store_visitors=2))
    vid, sid = ids()
    ws, _ = await open_session(url, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p5")]})
    assert (await recv(ws))["t"] == "ack"
    patch = await recv(ws)
    assert patch["t"] == "patch" and patch["pseq"] == 1
    await ws.close()
    ws, welcome = await open_session(url, vid, sid, ack=1, pseq=1)  # a plain reconnect
    assert welcome["pseq"] == 1 and "resume" not in welcome
    for _ in range(3):  # other visitors push this one out of the store (cap 2)
        other, other_sid = ids()
        o, _ = await open_session(url, other, other_sid)
        await send(o, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")]})
        assert (await recv(o))["t"] == "ack"
        await o.close()
    await send(ws, {"t": "events", "seq": 2, "events": [hover("p5")]})
    assert (await recv(ws))["t"] == "ack"
    patch = await recv(ws)
    assert patch["t"] == "patch" and patch["pseq"] == 2
    await ws.close()
