"""Inputs that a lenient parser or a loose pattern once let through (audit of 2026-12-02).

- JSON beyond RFC 8259 (NaN, Infinity, a number that overflows, a lone UTF-16 surrogate) is
  refused at every entry point (socket, beacon, admin API, rules file), so nothing accepted can
  fail later when it is written back as UTF-8 JSON (event log, wire, rules file).
- A batch is stored and logged, or neither (a failing log write leaves the store as it was).
- Ids and names with a trailing newline fail their patterns (`\\Z`, not `$`).
- Edits of the rule set made at the same time all land.
- The embedded mode exports and erases a visitor's logged events, rotated files included.
- Starlette's own 404/405 are JSON; `serve --port` is range-checked.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest

from microadjust import jsonfast
from microadjust.cli import parser
from microadjust.engine import compile_rules
from microadjust.engine.rules import RuleSetError
from microadjust.eventlog import EventLog
from microadjust.rulebook import RulesFileError, read_rules_file
from microadjust.store import StoreUnavailable
from microadjust.store.memory import MemoryStore

from .helpers import DEMO_RULES, TOKEN, ids, make_settings, open_session, recv

AUTH = {"authorization": f"Bearer {TOKEN}"}
ORIGIN = {"origin": "http://page.test", "content-type": "text/plain;charset=UTF-8"}
RULE = {
    "id": "cta-pulse", "on": ["click"], "when": {"==": [{"var": "event.item"}, "p2"]},
    "target": {"slot": "cta"}, "ops": [{"op": "addClass", "class": "ma-pulse"}], "ttl": 5000,
}
NOT_JSON = [
    ('"\\ud800"', "lone surrogate"),
    (b'"\xed\xa0\x80"', "lone surrogate"),
    ('{"a":[1,{"b":"x\\udfff"}]}', "lone surrogate"),
    ('{"\\ud800":1}', "lone surrogate"),
    ("NaN", "not finite"),
    ("[Infinity]", "not finite"),
    ("[-Infinity]", "not finite"),
    ("1e999", "not finite"),
]


@pytest.mark.parametrize("text,why", NOT_JSON)
def test_what_is_not_rfc_8259_json_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        jsonfast.loads(text)


def test_json_that_only_the_fallback_parser_reads_is_still_accepted():
    assert jsonfast.loads('["\\ud83d\\ude00", 1.5]') == ["\U0001F600", 1.5]  # a surrogate pair
    assert jsonfast.loads("18446744073709551616") == 18446744073709551616.0  # beyond 64 bits: ujson's float


@pytest.fixture
def server(live_server, tmp_path):
    rules = tmp_path / "rules.json"
    shutil.copy(DEMO_RULES, rules)
    url = live_server(make_settings(tmp_path, rules_file=rules))
    url.rules = rules
    url.log = tmp_path / "data" / "events.jsonl"
    return url


def stored(url, sid):
    r = httpx.get(url + "/v1/admin/stats", params={"sid": sid}, headers=AUTH)
    return r.json()["sessions"].get(sid, 0)


def beacon_text(vid, sid, el):
    return ('{"site":"demo","vid":"%s","sid":"%s","seq":1,"events":[{"k":"click","ts":1,"item":"p1","el":"%s"}]}'
            % (vid, sid, el))


def logged(server, vid):
    return [json.loads(line) for line in server.log.read_text().splitlines() if vid in line]


@pytest.mark.parametrize("el", ["a\\ud83d", "\\udfffb", b"\xed\xa0\x80"])
def test_a_beacon_with_a_lone_surrogate_is_stored_with_a_replacement_character(server, el):
    """A title cut in the middle of an emoji: the batch is kept, the broken half becomes U+FFFD."""
    vid, sid = ids()
    body = beacon_text(vid, sid, el.decode("latin-1") if isinstance(el, bytes) else el)
    body = body.encode("latin-1") if isinstance(el, bytes) else body
    r = httpx.post(server + "/v1/events", content=body, headers=ORIGIN)
    assert r.status_code == 200 and r.json() == {"ack": 1}
    assert stored(server, sid) == 1
    (record,) = logged(server, vid)
    assert "\ufffd" in record["el"]


async def test_a_socket_message_with_a_lone_surrogate_is_stored_and_acked(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await ws.send('{"t":"events","seq":1,"events":[{"k":"view","ts":1,"url":"/","title":"Sale \\ud83d"}]}')
    assert await recv(ws) == {"t": "ack", "seq": 1}
    await ws.close()
    assert stored(server, sid) == 1
    assert logged(server, vid)[0]["title"] == "Sale \ufffd"


async def test_nan_in_a_socket_message_is_bad_json_and_the_socket_lives_on(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await ws.send('{"t":"events","seq":1,"events":[{"k":"scroll","ts":1,"depth":NaN,"speed":1}]}')
    err = await recv(ws)
    assert err["t"] == "error" and err["code"] == "bad_json" and "not finite" in err["detail"]
    await ws.send('{"t":"events","seq":1,"events":[{"k":"click","ts":1,"item":"p1"}]}')
    assert await recv(ws) == {"t": "ack", "seq": 1}
    await ws.close()
    assert stored(server, sid) == 1


def test_a_scroll_speed_above_the_cap_is_the_cap():
    from microadjust import protocol

    t, batch = protocol.validate_client_message(
        {"t": "events", "seq": 1, "events": [{"k": "scroll", "ts": 1, "depth": 100, "speed": 1_723_505}]})
    assert batch.events[0]["speed"] == 1_000_000
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_client_message({"t": "events", "seq": 1, "events": [{"k": "scroll", "ts": 1, "depth": 1, "speed": -1}]})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_a_rule_with_a_non_finite_number_is_refused_and_the_api_keeps_answering(server, literal):
    body = json.dumps(RULE).replace('"p2"', literal)
    r = httpx.post(server + "/v1/admin/rules", headers=AUTH, content=body)
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    assert httpx.get(server + "/v1/admin/rules", headers=AUTH).status_code == 200
    assert literal not in server.rules.read_text()


def test_a_rule_with_a_lone_surrogate_is_refused_by_validate_and_create(server):
    body = json.dumps({**RULE, "description": "x"}).replace('"x"', '"\\ud800"')
    for path in ("/v1/admin/rules", "/v1/admin/rules/validate"):
        r = httpx.post(server + path, headers=AUTH, content=body)
        assert r.status_code == 400 and "lone surrogate" in r.json()["detail"], path


@pytest.mark.parametrize("content,why", [
    (b'{"rules": [], "x": NaN}', "not finite"),
    (b'{"rules": [], "description": "\\ud800"}', "lone surrogate"),
    (b'{"rules": [], "description": "\xff"}', "not UTF-8"),
    (b'{"rules": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
])
def test_a_rules_file_beyond_json_is_a_rules_file_error(tmp_path, content, why):
    path = tmp_path / "rules.json"
    path.write_bytes(content)
    with pytest.raises(RulesFileError, match=why):
        read_rules_file(path)


def test_rules_validate_names_the_problem_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "rules.json"
    path.write_bytes(b'{"rules": [], "description": "\xff"}')
    args = parser().parse_args(["rules", "validate", str(path)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("microadjust: rules file") and "not UTF-8" in err and "Traceback" not in err


async def test_reload_error_clears_when_the_file_is_put_back_as_it_was(server):
    good = server.rules.read_bytes()
    server.rules.write_text('{"rules": [')
    for _ in range(100):
        if httpx.get(server + "/v1/admin/rules", headers=AUTH).json()["reload_error"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the broken file was not reported")
    server.rules.write_bytes(good)
    for _ in range(100):
        if httpx.get(server + "/v1/admin/rules", headers=AUTH).json()["reload_error"] is None:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("reload_error stayed after the file was put back")


@pytest.mark.parametrize("field,value", [
    ("id", "nl\n"), ("id", "ok\n"), ("target", {"slot": "cta\n"}),
    ("ops", [{"op": "addClass", "class": "ma-pulse\n"}]),
])
def test_names_with_a_trailing_newline_fail_their_patterns(field, value):
    with pytest.raises(RuleSetError):
        compile_rules({"version": 1, "rules": [{**RULE, field: value}]})


def test_the_admin_api_refuses_a_rule_id_with_a_trailing_newline(server):
    r = httpx.post(server + "/v1/admin/rules", headers=AUTH, content=json.dumps({**RULE, "id": "nl\n"}))
    assert r.status_code == 422 and r.json()["error"] == "invalid_rules"


async def test_a_rule_added_while_another_is_replaced_is_kept(server):
    """PUT /v1/admin/rules/a reads its body slowly; POST of rule b lands meanwhile: both stay."""
    release = asyncio.Event()

    async def slow_body():
        yield b'{"on": ["click"], "when": {"==": [{"var": "event.item"}, "p3"]}, '
        await release.wait()
        yield b'"target": {"slot": "cta"}, "ops": [{"op": "addClass", "class": "ma-a"}], "ttl": 5000}'

    async with httpx.AsyncClient(base_url=server, headers=AUTH) as client:
        put = asyncio.create_task(client.put("/v1/admin/rules/rule-a", content=slow_body()))
        await asyncio.sleep(0.3)  # the PUT is in, waiting for the rest of its body
        r = await client.post("/v1/admin/rules", content=json.dumps({**RULE, "id": "rule-b"}))
        assert r.status_code == 201
        release.set()
        r = await put
        assert r.status_code == 201, r.text
        live = (await client.get("/v1/admin/rules")).json()["doc"]["rules"]
    names = [rule["id"] for rule in live]
    assert "rule-a" in names and "rule-b" in names
    on_disk = [rule["id"] for rule in json.loads(server.rules.read_text())["rules"]]
    assert on_disk == names


def test_put_and_delete_of_a_rule_answer_as_before(server):
    r = httpx.put(server + "/v1/admin/rules/cta-pulse", headers=AUTH, content=json.dumps(RULE))
    assert r.status_code == 201 and r.json()["rule"] == "cta-pulse"
    r = httpx.put(server + "/v1/admin/rules/cta-pulse", headers=AUTH, content=json.dumps({**RULE, "ttl": 4000}))
    assert r.status_code == 200
    assert httpx.post(server + "/v1/admin/rules", headers=AUTH, content=json.dumps(RULE)).status_code == 409
    assert httpx.delete(server + "/v1/admin/rules/cta-pulse", headers=AUTH).status_code == 200
    r = httpx.delete(server + "/v1/admin/rules/cta-pulse", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


# ---------------------------------------------------------------- store and log


class FailingLog:
    def append(self, *args):
        raise OSError(28, "No space left on device")


async def test_a_batch_whose_log_write_fails_is_neither_stored_nor_acked():
    store = MemoryStore(log=FailingLog())
    snap = await store.load("v_visitor1", "s_session1")
    with pytest.raises(StoreUnavailable, match="event log not written"):
        await store.commit("v_visitor1", "s_session1", snap, {"v": {"a": 1}, "s": {}}, 3, 1, [{"k": "click", "ts": 1, "seq": 3}])
    again = await store.load("v_visitor1", "s_session1")
    assert again.profile is None and again.ack == 0 and again.version == snap.version
    store.log = None  # the disk has room again: the resend is stored
    assert await store.commit("v_visitor1", "s_session1", again, {"v": {"a": 1}, "s": {}}, 3, 1, [{"k": "click", "ts": 1, "seq": 3}])
    assert (await store.load("v_visitor1", "s_session1")).ack == 3


def records(log: EventLog, vid: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(vid, "s_session1", [{"k": "click", "ts": i, "seq": i + 1}], at=i)


async def test_export_and_erasure_cover_every_file_of_the_log(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", max_bytes=600, backups=3)
    for i in range(12):  # interleaved: every file holds both visitors
        records(log, "v_erase_me", 1, i)
        records(log, "v_keep_me1", 1, i)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    mine = await log.visitor_records("v_erase_me")
    # What the log still holds (the oldest file rotated away), oldest first.
    assert [r["seq"] for r in mine] == sorted(r["seq"] for r in mine) and len(mine) >= 6
    assert all(r["vid"] == "v_erase_me" for r in mine)
    kept_before = await log.visitor_records("v_keep_me1")
    assert await log.erase("v_erase_me") == len(mine)
    assert await log.visitor_records("v_erase_me") == []
    assert await log.visitor_records("v_keep_me1") == kept_before
    assert not any(b"v_erase_me" in p.read_bytes() for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no temporary file left
    records(log, "v_keep_me1", 1, 100)  # the log goes on in the rewritten file
    assert (await log.visitor_records("v_keep_me1"))[-1]["seq"] == 101
    log.close()


async def test_records_appended_while_the_log_is_erased_are_kept(tmp_path, monkeypatch):
    from microadjust import eventlog

    log = EventLog(tmp_path / "events.jsonl", max_bytes=10_000_000)
    records(log, "v_erase_me", 5)
    records(log, "v_keep_me1", 5)
    copy = eventlog._filtered_copy

    def slow_copy(*args):
        # While the current file is copied, the event loop appends (simulated right here,
        # after the copy's end was fixed).
        out = copy(*args)
        loop.call_soon_threadsafe(records, log, "v_keep_me1", 3, 50)
        loop.call_soon_threadsafe(records, log, "v_erase_me", 2, 60)
        return out

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(eventlog, "_filtered_copy", slow_copy)
    removed = await log.erase("v_erase_me")
    assert removed == 7  # the 5 before and the 2 appended during the copy
    kept = [r["seq"] for r in await log.visitor_records("v_keep_me1")]
    assert kept == [1, 2, 3, 4, 5, 51, 52, 53]
    log.close()


async def test_embedded_export_lists_logged_events_and_erasure_removes_them(server):
    vid, sid = ids()
    r = httpx.post(server + "/v1/events", content=beacon_text(vid, sid, "x"), headers=ORIGIN)
    assert r.status_code == 200
    other, other_sid = ids()
    assert httpx.post(server + "/v1/events", content=beacon_text(other, other_sid, "y"), headers=ORIGIN).status_code == 200
    exported = httpx.get(server + f"/v1/visitors/{vid}", headers=AUTH).json()
    assert [(e["vid"], e["sid"], e["k"], e["seq"]) for e in exported["events"]] == [(vid, sid, "click", 1)]
    assert httpx.delete(server + f"/v1/visitors/{vid}", headers=AUTH).status_code == 204
    assert vid not in server.log.read_text() and other in server.log.read_text()
    again = httpx.get(server + f"/v1/visitors/{vid}", headers=AUTH).json()
    assert again["events"] == [] and again["profile"] is None


# ---------------------------------------------------------------- HTTP and CLI


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/no/such/path", 404, "not_found"),
    ("PATCH", "/v1/admin/rules", 405, "method_not_allowed"),
    ("POST", "/healthz", 405, "method_not_allowed"),
    ("POST", "/metrics", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_get_json_errors(server, method, path, status, code):
    r = httpx.request(method, server + path, headers=AUTH)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == code
    if status == 405:
        assert r.headers["allow"]


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(port, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["serve", "--port", port])
    assert exit_.value.code == 2 and "--port" in capsys.readouterr().err
