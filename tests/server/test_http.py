"""HTTP routes against a live server: script, health, the beacon (PROTOCOL §3.2), demo pages."""

from __future__ import annotations

import json

import httpx
import pytest

from .helpers import DEMO_RULES, TOKEN, hover, ids, make_settings, open_session, recv, send

ORIGIN = {"origin": "http://page.test"}


@pytest.fixture
def server(live_server, tmp_path):
    return live_server(make_settings(tmp_path, rules_file=DEMO_RULES))


def beacon(url, body, headers=ORIGIN, content_type="text/plain;charset=UTF-8"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(url + "/v1/events", content=data, headers={"content-type": content_type, **(headers or {})})


def stored(url, sid):
    r = httpx.get(url + "/v1/admin/stats", params={"sid": sid}, headers={"authorization": f"Bearer {TOKEN}"})
    return r.json()["sessions"][sid]


# ---------------------------------------------------------------- beacon


def test_beacon_with_text_plain_body_is_stored_and_acked(server):
    vid, sid = ids()
    r = beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": [hover("p1", 100, "end")] * 3})
    assert r.status_code == 200 and r.json() == {"ack": 3}
    assert stored(server, sid) == 3


async def test_beacon_and_socket_share_de_duplication(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    await send(ws, {"t": "events", "seq": 1, "events": [hover("p1", 100, "end")] * 2})
    assert await recv(ws) == {"t": "ack", "seq": 2}
    # pagehide: the tracker beacons everything unacked it still holds, overlapping the socket.
    r = beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 2, "events": [hover("p1", 100, "end")] * 3})
    assert r.json() == {"ack": 4}
    # The same beacon again (sendBeacon retried) changes nothing.
    assert beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 2, "events": [hover("p1", 100, "end")] * 3}).json() == {"ack": 4}
    # And a socket resend of the beacon's events is dropped too.
    await send(ws, {"t": "events", "seq": 3, "events": [hover("p1", 100, "end")] * 2})
    assert await recv(ws) == {"t": "ack", "seq": 4}
    assert stored(server, sid) == 4
    await ws.close()


async def test_patches_decided_from_a_beacon_reach_the_sessions_open_socket(server):
    vid, sid = ids()
    ws, _ = await open_session(server, vid, sid)
    assert beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": [hover("p5")]}).json() == {"ack": 1}
    patch = await recv(ws)
    assert patch["t"] == "patch" and patch["patch"]["target"] == {"item": "p5"}
    await ws.close()


def test_beacon_with_a_bad_event_is_refused_400_naming_the_path(server):
    vid, sid = ids()
    r = beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": [dict(hover(), dur=-5)]})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_message", "detail": "events[0].dur: expected integer >= 0"}
    assert stored(server, sid) == 0


def test_beacon_that_is_not_json_is_refused_400(server):
    r = beacon(server, "{nope")
    assert r.status_code == 400 and r.json()["error"] == "bad_json"


@pytest.mark.parametrize("headers", [{"origin": "http://evil.test"}, {}], ids=["foreign", "missing"])
def test_beacon_from_a_foreign_or_missing_origin_is_refused_403(server, headers):
    vid, sid = ids()
    r = beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": [hover()]}, headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
    assert stored(server, sid) == 0


def test_beacon_for_an_unknown_site_is_refused_403(server):
    vid, sid = ids()
    r = beacon(server, {"site": "nope", "vid": vid, "sid": sid, "seq": 1, "events": [hover()]})
    assert r.status_code == 403 and r.json()["error"] == "unknown_site"


def test_beacon_over_the_frame_limit_is_refused_413(server):
    vid, sid = ids()
    r = beacon(server, {"site": "demo", "vid": vid, "sid": sid, "seq": 1, "events": [hover()], "pad": "x" * 70_000})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_beacon_preflight_allows_a_configured_origin_only(server):
    ok = httpx.options(server + "/v1/events", headers={**ORIGIN, "access-control-request-method": "POST"})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == "http://page.test"
    bad = httpx.options(server + "/v1/events", headers={"origin": "http://evil.test"})
    assert bad.status_code == 403


# ---------------------------------------------------------------- script and health


def test_tracker_script_is_served_cacheable_with_an_etag(live_server, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "microadjust.js").write_text("(()=>{})();\n")
    settings = make_settings(tmp_path)
    settings.static_dir = static
    url = live_server(settings)
    r = httpx.get(url + "/microadjust.js")
    assert r.status_code == 200 and r.text == "(()=>{})();\n"
    assert r.headers["content-type"] == "application/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300"
    again = httpx.get(url + "/microadjust.js", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304


def test_tracker_script_not_built_is_a_503_with_instructions(live_server, tmp_path):
    settings = make_settings(tmp_path)
    settings.static_dir = tmp_path / "empty"
    r = httpx.get(live_server(settings) + "/microadjust.js")
    assert r.status_code == 503 and r.json()["error"] == "not_built"


def test_health_and_readiness(server):
    import os

    assert httpx.get(server + "/healthz").json() == {"ok": True, "pid": os.getpid()}  # which worker answered
    assert httpx.get(server + "/readyz").status_code == 200


def test_every_http_response_carries_a_request_id(server):
    fresh = httpx.get(server + "/healthz").headers["x-request-id"]
    assert len(fresh) == 16
    assert httpx.get(server + "/healthz", headers={"x-request-id": "lb-42.abc"}).headers["x-request-id"] == "lb-42.abc"
    # A hostile id (too long, odd characters) is replaced, never echoed into logs.
    assert httpx.get(server + "/healthz", headers={"x-request-id": "a b\"c" * 30}).headers["x-request-id"] != "a b\"c" * 30


# ---------------------------------------------------------------- demo


def test_demo_pages_follow_the_markup_contract_under_a_strict_csp(live_server, tmp_path):
    settings = make_settings(tmp_path, rules_file=None)
    settings.demo = True
    url = live_server(settings)
    shop = httpx.get(url + "/")
    assert shop.status_code == 200
    assert shop.headers["content-security-policy"] == "script-src 'self'"
    html = shop.text
    assert html.count('<article class="product ') == 8 and 'data-ma-slot="grid"' in html
    assert html.count('<li data-ma-item="r') == 6 and 'data-ma-slot="recs"' in html
    for needle in ('data-ma-slot="cta"', 'data-ma-slot="discount" role="status" hidden', 'data-ma-text="msg"',
                   'data-ma-slot="explore"', '<template id="ma-offer">',
                   '<script src="/microadjust.js" data-site="demo" async></script>'):
        assert needle in html
    assert "<script>" not in html and "onclick" not in html  # nothing inline: CSP would block it
    assert httpx.get(url + "/shop").text == html
    article = httpx.get(url + "/article").text
    assert 'data-ma-slot="sec-1"' in article and 'data-ma-slot="preview"' in article
    assert 'data-ma-slot="details" hidden' in article
    css = httpx.get(url + "/demo/demo.css")
    assert css.status_code == 200 and ".ma-emphasis" in css.text
    js = httpx.get(url + "/demo/demo.js")
    assert js.headers["content-type"] == "application/javascript; charset=utf-8" and "add_to_cart" in js.text
    assert httpx.get(url + "/demo/rules.json").status_code == 404
    assert httpx.get(url + "/demo/..%2fapp.py").status_code == 404


def test_the_rule_simulator_page_is_mounted(server):
    r = httpx.get(server + "/simulator")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
