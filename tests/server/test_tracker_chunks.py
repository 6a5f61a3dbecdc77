"""The tracker's lazily loaded chunk (client_js/build.mjs CHUNKS) is served like the tracker itself:
JavaScript, cacheable, with an ETag; any other name is a JSON 404 and no path reaches the disk."""

from __future__ import annotations

import os

import httpx
import pytest

from .helpers import make_settings

CHUNK = "export const create=()=>0;\n"


@pytest.fixture
def url(live_server, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "microadjust.js").write_text("(()=>{})();\n")
    (static / "microadjust-patcher.js").write_text(CHUNK)
    (static / "microadjust-secret.js").write_text("not a tracker file\n")  # present, but not on the list
    (tmp_path / "outside.js").write_text("outside static\n")
    settings = make_settings(tmp_path)
    settings.static_dir = static
    return live_server(settings)


def test_patcher_chunk_is_served_as_javascript_cacheable_with_an_etag(url):
    r = httpx.get(url + "/microadjust-patcher.js")
    assert r.status_code == 200 and r.text == CHUNK
    assert r.headers["content-type"] == "application/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300"
    # import() from a page on another origin fetches in CORS mode
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["etag"] != httpx.get(url + "/microadjust.js").headers["etag"]
    again = httpx.get(url + "/microadjust-patcher.js", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = httpx.head(url + "/microadjust-patcher.js")
    assert head.status_code == 200 and head.headers["etag"] == r.headers["etag"]


def test_a_rebuilt_chunk_gets_a_new_etag(url, tmp_path):
    first = httpx.get(url + "/microadjust-patcher.js").headers["etag"]
    path = tmp_path / "static" / "microadjust-patcher.js"
    path.write_text(CHUNK + "//v2\n")
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    r = httpx.get(url + "/microadjust-patcher.js", headers={"if-none-match": first})
    assert r.status_code == 200 and r.text.endswith("//v2\n") and r.headers["etag"] != first


@pytest.mark.parametrize("path", ["/microadjust-secret.js", "/microadjust-extra.js", "/microadjust-patcher%00.js",
                                  "/microadjust-patcher.min.js", "/microadjust-..%5Coutside.js"])
def test_unknown_chunk_names_are_a_json_404_never_a_file(url, path):
    r = httpx.get(url + path)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.parametrize("path", ["/microadjust-.js", "/microadjust-patcher.js.map", "/microadjust-..%2Foutside.js",
                                  "/microadjust-%2e%2e%2foutside.js", "/microadjust-../outside.js"])
def test_paths_outside_the_name_pattern_are_not_found(url, path):
    r = httpx.get(url + path)
    assert r.status_code == 404
    assert "outside static" not in r.text and "not a tracker file" not in r.text


def test_chunk_not_built_is_a_503_with_instructions(live_server, tmp_path):
    settings = make_settings(tmp_path)
    settings.static_dir = tmp_path / "empty"
    r = live_server(settings)
    got = httpx.get(r + "/microadjust-patcher.js")
    assert got.status_code == 503 and got.json()["error"] == "not_built"
    assert "microadjust-patcher.js" in got.json()["detail"]
