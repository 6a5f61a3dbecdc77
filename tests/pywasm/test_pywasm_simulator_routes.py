"""The simulator's routes (server/microadjust/simulator.py): the page with its CSP, and the Pyodide
build served with the content types browsers insist on, gzip when accepted, and nothing else."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from microadjust.simulator import SIMULATOR_CSP, simulator_routes

ROOT = Path(__file__).resolve().parents[2]
WASM = b"\0asm\x01\0\0\0" + b"\0" * 4096


@pytest.fixture
def pywasm_dir(tmp_path: Path) -> Path:
    """A pywasm/ directory as the build leaves it, with small stand-ins for the runtime files."""
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "index.html").write_text("<!doctype html><title>sim</title>")
    (tmp_path / "simulator" / "simulator.mjs").write_text("export {};")
    (tmp_path / "loader.mjs").write_text("export async function loadEngine() {}")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "pyodide.asm.wasm").write_bytes(WASM)
    (dist / "pyodide.asm.wasm.gz").write_bytes(gzip.compress(WASM))
    (dist / "pyodide.mjs").write_text("export const loadPyodide = 1;")
    (dist / "microadjust_engine-0.1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (dist / "stray.js").write_text("not from the build")
    files = {n: {"bytes": 1, "sha256": "x"} for n in ["pyodide.asm.wasm", "pyodide.asm.wasm.gz", "pyodide.mjs", "microadjust_engine-0.1.0-py3-none-any.whl"]}
    (dist / "manifest.json").write_text(json.dumps({"files": files}))
    return tmp_path


def client(pywasm_dir: Path) -> TestClient:
    return TestClient(Starlette(routes=simulator_routes(pywasm_dir)))


def test_simulator_page_is_served_with_a_csp_that_allows_wasm_but_no_inline_script(pywasm_dir: Path):
    r = client(pywasm_dir).get("/simulator")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert csp == SIMULATOR_CSP
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp and "unsafe-inline" not in csp


def test_the_real_simulator_page_has_no_inline_script_or_style():
    html = (ROOT / "pywasm" / "simulator" / "index.html").read_text()
    assert "<script>" not in html and " on" + "click=" not in html and "<style" not in html and "style=" not in html
    assert '<script type="module" src="/pywasm/simulator/simulator.mjs">' in html


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/pywasm/pyodide.asm.wasm", "application/wasm"),
        ("/pywasm/pyodide.mjs", "text/javascript; charset=utf-8"),
        ("/pywasm/microadjust_engine-0.1.0-py3-none-any.whl", "application/zip"),
        ("/pywasm/loader.mjs", "text/javascript; charset=utf-8"),
        ("/pywasm/simulator/simulator.mjs", "text/javascript; charset=utf-8"),
        ("/pywasm/simulator/demo-rules.json", "application/json"),
    ],
)
def test_assets_carry_the_content_type_browsers_require(pywasm_dir: Path, path: str, content_type: str):
    r = client(pywasm_dir).get(path, headers={"accept-encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type


def test_demo_rules_are_the_servers_own_file(pywasm_dir: Path):
    r = client(pywasm_dir).get("/pywasm/simulator/demo-rules.json")
    assert r.json() == json.loads((ROOT / "server" / "microadjust" / "demo" / "rules.json").read_text())


def test_wasm_is_sent_gzip_encoded_only_to_clients_that_accept_it(pywasm_dir: Path):
    c = client(pywasm_dir)
    zipped = c.get("/pywasm/pyodide.asm.wasm", headers={"accept-encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == WASM  # the test client decodes, as a browser does
    plain = c.get("/pywasm/pyodide.asm.wasm", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == WASM


def test_a_cached_asset_is_revalidated_with_its_etag(pywasm_dir: Path):
    c = client(pywasm_dir)
    first = c.get("/pywasm/pyodide.mjs")
    again = c.get("/pywasm/pyodide.mjs", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["/pywasm/stray.js", "/pywasm/..%2Floader.mjs", "/pywasm/.hidden", "/pywasm/simulator/..%2F..%2Fetc"])
def test_only_files_the_build_produced_are_served(pywasm_dir: Path, path: str):
    r = client(pywasm_dir).get(path)
    assert r.status_code == 404


def test_without_a_build_the_runtime_answers_503_saying_how_to_build(pywasm_dir: Path):
    (pywasm_dir / "dist" / "manifest.json").unlink()
    r = client(pywasm_dir).get("/pywasm/pyodide.mjs")
    assert r.status_code == 503
    assert r.json()["error"] == "not_built" and "npm run build:pywasm" in r.json()["detail"]


def test_head_requests_are_answered(pywasm_dir: Path):
    r = client(pywasm_dir).head("/pywasm/pyodide.asm.wasm", headers={"accept-encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-length"] == str(len(WASM))
