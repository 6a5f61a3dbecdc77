"""GET /v1/rules/snapshot?site=KEY: the live rule set for the tracker's offline mode (docs/PYWASM.md).

Opt-in (`serve --public-rules`), Origin checked against the site's allow-list like the beacon,
JSON errors, an ETag that follows the live document. Also: `/pywasm/offline.mjs` is served.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from microadjust.cli import build_settings, parser

from .helpers import DEMO_RULES, TOKEN, make_settings

PAGE = "http://page.test"


def snapshot(url, site="demo", origin=PAGE, **headers):
    params = {} if site is None else {"site": site}
    if origin is not None:
        headers["origin"] = origin
    return httpx.get(url + "/v1/rules/snapshot", params=params, headers=headers)


@pytest.fixture
def public(live_server, tmp_path):
    # A copy: the admin API writes rule changes back to the rules file.
    rules = tmp_path / "rules.json"
    shutil.copyfile(DEMO_RULES, rules)
    settings = make_settings(tmp_path, rules_file=rules)
    settings.public_rules = True
    return live_server(settings)


@pytest.fixture
def private(live_server, tmp_path):
    return live_server(make_settings(tmp_path, rules_file=DEMO_RULES))


def test_off_by_default_answers_404_json(private):
    r = snapshot(private)
    assert r.status_code == 404
    assert r.json()["error"] == "not_enabled"
    assert "--public-rules" in r.json()["detail"]
    assert "access-control-allow-origin" not in r.headers


def test_allowed_origin_gets_the_live_document_with_etag_and_cors(public):
    r = snapshot(public)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == json.loads(DEMO_RULES.read_text("utf-8"))
    assert r.headers["access-control-allow-origin"] == PAGE
    assert "Origin" in r.headers["vary"]
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    assert etag.startswith('"') and len(etag) == 22
    # Revalidation: same document, same ETag, 304 without a body.
    again = snapshot(public, **{"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag


def test_etag_and_body_follow_a_rule_change(public):
    before = snapshot(public)
    doc = before.json()
    doc["rules"] = [r for r in doc["rules"] if r["id"] != "hover-emphasis"]
    put = httpx.put(public + "/v1/admin/rules", json=doc, headers={"authorization": f"Bearer {TOKEN}"})
    assert put.status_code == 200, put.text
    after = snapshot(public, **{"if-none-match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert [r["id"] for r in after.json()["rules"]] == [r["id"] for r in doc["rules"]]


def test_origin_of_another_site_or_none_is_refused(public):
    other = snapshot(public, origin="http://other.test")  # allowed for site `other`, not `demo`
    assert other.status_code == 403 and other.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in other.headers
    stranger = snapshot(public, origin="http://evil.test")
    assert stranger.status_code == 403 and stranger.json()["error"] == "origin_not_allowed"
    none = snapshot(public, origin=None)  # curl, or a cross-site no-cors request
    assert none.status_code == 403 and none.json()["error"] == "origin_not_allowed"
    # A cross-site fetch says so in Sec-Fetch-Site: no fallback to the request's own origin.
    cross = snapshot(public, origin=None, host="page.test", **{"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403


def test_same_origin_get_without_origin_header_is_checked_by_host(public):
    # Browsers send no Origin on a same-origin GET; Sec-Fetch-Site says it is one.
    ok = snapshot(public, origin=None, host="page.test", **{"sec-fetch-site": "same-origin"})
    assert ok.status_code == 200 and ok.json()["rules"]
    bad = snapshot(public, origin=None, host="elsewhere.test", **{"sec-fetch-site": "same-origin"})
    assert bad.status_code == 403 and bad.json()["error"] == "origin_not_allowed"


def test_unknown_or_missing_site_is_refused(public):
    r = snapshot(public, site="nope")
    assert r.status_code == 403 and r.json()["error"] == "unknown_site"
    r = snapshot(public, site=None)
    assert r.status_code == 403 and r.json()["error"] == "unknown_site"


def test_cli_flag_is_opt_in(tmp_path):
    base = ["serve", "--demo", "--data-dir", str(tmp_path)]
    assert build_settings(parser().parse_args(base)).public_rules is False
    assert build_settings(parser().parse_args([*base, "--public-rules"])).public_rules is True


def test_offline_module_is_served_under_pywasm(private):
    r = httpx.get(private + "/pywasm/offline.mjs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert "microadjust:state" in r.text
    assert httpx.get(private + "/pywasm/offline-nope.mjs").status_code == 404
