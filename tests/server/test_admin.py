"""The admin API (`/v1/admin/*`): bearer auth, rules CRUD with whole-set validation, hot reload."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest

from .helpers import DEMO_RULES, TOKEN, TS, ids, make_settings, open_session, recv, send, until

AUTH = {"authorization": f"Bearer {TOKEN}"}
CLICK_RULE = {
    "id": "cta-pulse", "description": "A click on the second product pulses the call to action.",
    "priority": 1, "on": ["click"], "when": {"==": [{"var": "event.item"}, "p2"]},
    "target": {"slot": "cta"}, "ops": [{"op": "addClass", "class": "ma-pulse"}], "ttl": 5000,
}
CLICK_P2 = {"k": "click", "ts": TS, "item": "p2"}


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.json"
    shutil.copy(DEMO_RULES, path)
    return path


@pytest.fixture
def server(live_server, tmp_path, rules_file):
    return live_server(make_settings(tmp_path, rules_file=rules_file))


def admin(url, method, path, body=None, headers=AUTH):
    return httpx.request(method, url + path, headers=headers, content=None if body is None else json.dumps(body))


async def click_gets_patch(url) -> bool:
    """Does a click on p2 produce a patch right now (with the live rule set)?"""
    ws, _ = await open_session(url, *ids())
    await send(ws, {"t": "events", "seq": 1, "events": [CLICK_P2]})
    assert (await recv(ws))["t"] == "ack"
    await send(ws, {"t": "ping"})
    msg = await recv(ws)
    await ws.close()
    return msg["t"] == "patch"


@pytest.mark.parametrize("path", ["/v1/admin/rules", "/v1/admin/stats", "/v1/admin/rules/hover-emphasis"])
def test_admin_without_a_token_is_401_and_with_a_wrong_one_403(server, path):
    r = httpx.get(server + path)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(server + path, headers={"authorization": "Bearer wrong-token"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


def test_admin_is_disabled_without_a_configured_token(live_server, tmp_path):
    settings = make_settings(tmp_path)
    settings.admin_token = None
    r = httpx.get(live_server(settings) + "/v1/admin/rules", headers=AUTH)
    assert r.status_code == 403 and r.json()["error"] == "admin_disabled"


def test_rules_are_listed_and_fetched_by_id(server):
    r = admin(server, "GET", "/v1/admin/rules")
    assert r.status_code == 200
    ids_ = [rule["id"] for rule in r.json()["doc"]["rules"]]
    assert "hover-emphasis" in ids_ and r.json()["revision"] == 0
    one = admin(server, "GET", "/v1/admin/rules/hover-emphasis")
    assert one.status_code == 200 and one.json()["id"] == "hover-emphasis"
    assert admin(server, "GET", "/v1/admin/rules/nope").status_code == 404


def test_validate_reports_every_problem_with_its_path(server):
    doc = json.loads(DEMO_RULES.read_text())
    doc["rules"][1]["when"] = {">=": [{"var": "session.scrol.speed"}, 2]}
    r = admin(server, "POST", "/v1/admin/rules/validate", doc)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_rules"
    assert any(e["path"].startswith("rules[1].when") and "session.scrol.speed" in e["msg"] for e in r.json()["errors"])
    ok = admin(server, "POST", "/v1/admin/rules/validate", json.loads(DEMO_RULES.read_text()))
    assert ok.status_code == 200 and ok.json()["ok"] is True


async def test_created_rule_takes_effect_without_restart_and_is_written_to_the_file(server, rules_file):
    assert not await click_gets_patch(server)
    r = admin(server, "POST", "/v1/admin/rules", CLICK_RULE)
    assert r.status_code == 201 and r.json()["revision"] == 1
    assert await click_gets_patch(server)
    on_disk = json.loads(rules_file.read_text())
    assert "cta-pulse" in [rule["id"] for rule in on_disk["rules"]]
    assert admin(server, "POST", "/v1/admin/rules", CLICK_RULE).status_code == 409


async def test_a_broken_update_is_rejected_whole_and_the_last_good_set_stays_live(server, rules_file):
    assert admin(server, "PUT", "/v1/admin/rules/cta-pulse", CLICK_RULE).status_code == 201
    before = rules_file.read_text()
    broken = dict(CLICK_RULE, ops=[{"op": "setHTML", "html": "<img src=x onerror=alert(1)>"}])
    r = admin(server, "PUT", "/v1/admin/rules/cta-pulse", broken)
    assert r.status_code == 422
    assert all(e["path"].startswith("rules[") for e in r.json()["errors"])
    assert rules_file.read_text() == before
    assert admin(server, "GET", "/v1/admin/rules/cta-pulse").json()["ops"] == CLICK_RULE["ops"]
    assert await click_gets_patch(server)


async def test_deleted_rule_stops_firing(server):
    admin(server, "POST", "/v1/admin/rules", CLICK_RULE)
    r = admin(server, "DELETE", "/v1/admin/rules/cta-pulse")
    assert r.status_code == 200 and r.json()["deleted"] == "cta-pulse"
    assert not await click_gets_patch(server)
    assert admin(server, "DELETE", "/v1/admin/rules/cta-pulse").status_code == 404


def test_put_with_a_mismatched_id_or_bad_json_is_refused(server):
    r = admin(server, "PUT", "/v1/admin/rules/cta-pulse", dict(CLICK_RULE, id="other"))
    assert r.status_code == 422 and r.json()["errors"] == [{"path": "id", "msg": "expected 'cta-pulse'"}]
    r = httpx.post(server + "/v1/admin/rules", headers=AUTH, content=b"{oops")
    assert r.status_code == 400 and r.json()["error"] == "bad_json"


async def test_rules_file_edit_is_hot_reloaded_and_a_broken_edit_keeps_the_last_good_set(server, rules_file):
    doc = json.loads(rules_file.read_text())
    doc["rules"].append(CLICK_RULE)
    rules_file.write_text(json.dumps(doc))
    deadline = time.monotonic() + 5
    while admin(server, "GET", "/v1/admin/rules").json()["revision"] < 1:
        assert time.monotonic() < deadline, "rules file change not picked up"
        time.sleep(0.05)
    assert await click_gets_patch(server)
    rules_file.write_text('{"rules": [')  # a half-saved file
    deadline = time.monotonic() + 5
    while admin(server, "GET", "/v1/admin/rules").json()["reload_error"] is None:
        assert time.monotonic() < deadline, "broken rules file not reported"
        time.sleep(0.05)
    view = admin(server, "GET", "/v1/admin/rules").json()
    assert view["revision"] == 1 and "invalid JSON" in view["reload_error"]["errors"][0]["msg"]
    assert await click_gets_patch(server)


async def test_stats_count_connections_events_and_patches(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [{"k": "hover", "ts": TS, "item": "p1", "dur": 2500, "phase": "intent"}]})
    await until(ws, "patch")
    s = admin(server, "GET", "/v1/admin/stats").json()
    assert s["connections"] == 1 and s["events"] == 1 and s["patches"] == 1
    assert s["sessions"] == {sid: 1}
    await ws.close()
