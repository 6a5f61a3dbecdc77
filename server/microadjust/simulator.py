"""The rule simulator page and the Pyodide engine assets it runs on (issue 7, docs/PYWASM.md).

`/simulator` is a page where a product person pastes a rule set and a recorded event sequence
and sees which patches the engine would produce, and when, without a round trip: the page runs
the server's own `microadjust.engine` in the browser under Pyodide. This module only serves
files; it never evaluates anything itself.

    GET /simulator                  the page (strict CSP: no inline script, wasm allowed)
    GET /pywasm/loader.mjs          pywasm/loader.mjs, the engine's JS loader
    GET /pywasm/offline.mjs         pywasm/offline.mjs, the tracker's opt-in offline mode
    GET /pywasm/simulator/{name}    the page's script, stylesheet and example sequence
    GET /pywasm/simulator/demo-rules.json   the demo rule set shipped with the server
    GET /pywasm/{name}              pywasm/dist/ (`npm run build:pywasm`): Pyodide runtime,
                                    lockfile, engine wheel; gzip-encoded when the build made a .gz

The files come from the checkout's `pywasm/` directory (or `$MICROADJUST_PYWASM_DIR`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_PYWASM_DIR = PACKAGE_DIR.parent.parent / "pywasm"
DEMO_RULES = PACKAGE_DIR / "demo" / "rules.json"

# Pyodide compiles its wasm with WebAssembly.instantiateStreaming, which a CSP allows only with
# 'wasm-unsafe-eval'; nothing else (no inline script, no eval) is needed, so nothing else is allowed.
SIMULATOR_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# Explicit rather than guessed: a module script needs a JavaScript type, and streaming wasm
# compilation refuses anything but application/wasm.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".zip": "application/zip",
    ".whl": "application/zip",
}
# One path segment of known type: no "..", no slashes, so a request never leaves its directory.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _etag(path: Path) -> str:
    st = path.stat()
    return '"' + hashlib.sha256(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20] + '"'


def _serve(request: Request, path: Path, *, gzip_ok: bool = False, headers: dict | None = None) -> Response:
    """A file with its content type and an ETag; 304 when the browser already has it."""
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None or not path.is_file():
        return _error(404, "not_found", f"no such file: {path.name}")
    headers = {"Cache-Control": "no-cache", **(headers or {})}
    body = path
    gz = path.with_name(path.name + ".gz")
    if gzip_ok and gz.is_file():
        headers["Vary"] = "Accept-Encoding"
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = gz
            headers["Content-Encoding"] = "gzip"
    etag = _etag(body)
    headers["ETag"] = etag
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(body, media_type=content_type, headers=headers)


def simulator_routes(pywasm_dir: str | Path | None = None) -> list[Route]:
    """The simulator's routes, for `create_app` to add to its route list."""
    root = Path(pywasm_dir or os.environ.get("MICROADJUST_PYWASM_DIR") or DEFAULT_PYWASM_DIR)
    dist = root / "dist"
    page_dir = root / "simulator"

    async def page(request: Request) -> Response:
        return _serve(request, page_dir / "index.html", headers={"Content-Security-Policy": SIMULATOR_CSP})

    async def loader(request: Request) -> Response:
        return _serve(request, root / "loader.mjs")

    async def offline(request: Request) -> Response:
        return _serve(request, root / "offline.mjs")

    async def demo_rules(request: Request) -> Response:
        return _serve(request, DEMO_RULES)

    async def page_asset(request: Request) -> Response:
        name = request.path_params["name"]
        if not SAFE_NAME.match(name):
            return _error(404, "not_found", f"no such file: {name}")
        return _serve(request, page_dir / name)

    async def runtime_asset(request: Request) -> Response:
        name = request.path_params["name"]
        manifest = dist / "manifest.json"
        if not manifest.is_file():
            return _error(503, "not_built", "the Pyodide engine is not built: run `npm run build:pywasm` (it writes pywasm/dist/)")
        # Only what the build produced is served, never a stray file that lands in dist/.
        built = json.loads(manifest.read_text("utf-8"))["files"]
        if name != "manifest.json" and (not SAFE_NAME.match(name) or name not in built):
            return _error(404, "not_found", f"no such file in the Pyodide build: {name}")
        return _serve(request, dist / name, gzip_ok=True)

    methods = ["GET", "HEAD"]
    return [
        Route("/simulator", page, methods=methods),
        Route("/pywasm/loader.mjs", loader, methods=methods),
        Route("/pywasm/offline.mjs", offline, methods=methods),  # the tracker's offline mode
        Route("/pywasm/simulator/demo-rules.json", demo_rules, methods=methods),
        Route("/pywasm/simulator/{name}", page_asset, methods=methods),
        Route("/pywasm/{name}", runtime_asset, methods=methods),
    ]
