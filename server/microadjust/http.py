"""HTTP routes: the tracker script, health, the event beacon (PROTOCOL §3.2) and the admin API.

Every error is JSON `{"error": code, "detail": ...}` with a fitting status, so scripts and the
dashboard can show what went wrong. The admin API (`/v1/admin/*`) needs `Authorization: Bearer
<token>`: 401 without it, 403 with a wrong one, 403 when no token is configured at all (the API
is then disabled rather than open).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

import ujson
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import jsonfast
from . import protocol as P
from .gateway import CommitFailed, Gateway, Stats
from .rulebook import Rulebook, RuleEdit, RulesUnavailable, find_rule
from .settings import Settings

log = logging.getLogger("microadjust.http")

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_CSP = "script-src 'self'"  # strict: no inline script, no eval; the demo proves the tracker works under it
TRACKER_FILES = ("microadjust.js", "microadjust-patcher.js")  # the tracker and its lazily loaded chunk


def error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


class Routes:
    def __init__(self, settings: Settings, gateway: Gateway, rulebook: Rulebook, stats: Stats, store) -> None:
        self.settings = settings
        self.gateway = gateway
        self.rulebook = rulebook
        self.stats = stats
        self.store = store
        self._scripts: dict[str, tuple[float, bytes, str]] = {}  # name -> (mtime, body, etag)

    def routes(self) -> list[Route]:
        routes = [
            Route("/microadjust.js", self.script, methods=["GET", "HEAD"]),
            Route("/microadjust-{chunk}.js", self.script, methods=["GET", "HEAD"]),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/v1/events", self.beacon, methods=["POST", "OPTIONS"]),
            Route("/v1/rules/snapshot", self.rules_snapshot, methods=["GET", "HEAD"]),
            Route("/v1/admin/rules", self.rules, methods=["GET", "POST", "PUT"]),
            Route("/v1/admin/rules/validate", self.rules_validate, methods=["POST"]),
            Route("/v1/admin/rules/{id}", self.rule, methods=["GET", "PUT", "DELETE"]),
            Route("/v1/admin/stats", self.admin_stats),
            Route("/v1/visitors/{id}", self.visitor, methods=["GET", "DELETE"]),
        ]
        if self.settings.demo:
            routes += [
                Route("/", self.demo_page("shop.html")),
                Route("/shop", self.demo_page("shop.html")),
                Route("/article", self.demo_page("article.html")),
                Route("/demo/{name}", self.demo_asset),
            ]
        return routes

    # ------------------------------------------------------------------ script and health

    async def script(self, request: Request) -> Response:
        # The tracker and the chunks it import()s on demand (client_js/build.mjs CHUNKS): a fixed
        # list of names, never a path taken from the request.
        chunk = request.path_params.get("chunk")
        name = f"microadjust-{chunk}.js" if chunk else "microadjust.js"
        if name not in TRACKER_FILES:
            return error(404, "not_found", f"no tracker file {name!r}")
        path = Path(self.settings.static_dir) / name
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return error(503, "not_built", f"the tracker is not built: run `npm run build` (it writes static/{name})")
        cached = self._scripts.get(name)
        if cached is None or cached[0] != mtime:
            body = path.read_bytes()
            cached = self._scripts[name] = (mtime, body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
        _, body, etag = cached
        headers = {"Cache-Control": "public, max-age=300", "ETag": etag}
        if chunk:
            # import() fetches a module in CORS mode: a page on another origin than this server
            # needs this header to load the chunk. Public code, no credentials involved.
            headers["Access-Control-Allow-Origin"] = "*"
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "pid": os.getpid()})

    async def readyz(self, request: Request) -> Response:
        try:
            ready = await self.store.ready()
        except Exception as exc:  # a store that cannot even answer is not ready
            return error(503, "not_ready", f"store check failed: {exc}")
        if not ready or self.gateway.shutting_down:
            return error(503, "not_ready", "shutting down" if self.gateway.shutting_down else "store not ready")
        return JSONResponse({"ok": True})

    # ------------------------------------------------------------------ beacon (§3.2)

    def _cors(self, origin: str | None) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}

    async def beacon(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":
            # fetch(keepalive) with a JSON content type preflights; sendBeacon's text/plain does not.
            if not any(origin in o for o in self.settings.sites.values()):
                return error(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
            return Response(status_code=204, headers={**self._cors(origin), "Access-Control-Allow-Methods": "POST",
                                                      "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600"})
        limit = self.settings.limits.max_frame
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, "too_large", f"body over {limit} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return error(413, "too_large", f"body over {limit} bytes")
        try:
            beacon = P.validate_beacon(P.decode(body), self.settings.limits.max_batch)
        except P.ProtocolError as exc:
            self.stats.reject(exc.code)
            return error(400, exc.code, exc.detail)
        if beacon.site not in self.settings.sites:
            return error(403, "unknown_site", f"site {beacon.site!r} is not configured")
        if not self.settings.origin_allowed(beacon.site, origin):
            return error(403, "origin_not_allowed", f"origin {origin!r} is not allowed for site {beacon.site!r}")
        self.stats.beacons += 1
        try:
            result = await self.gateway.ingest.batch(beacon.vid, beacon.sid, beacon.consent, beacon.batch)
        except CommitFailed as exc:
            log.warning("beacon of session %s not stored: %s", beacon.sid, exc)
            return error(503, "unavailable", "the batch was not stored; resend it")
        # Decisions from beacon events reach the session's open sockets (on any process in
        # Redis mode) and its outbox, exactly like the socket path's.
        await self.gateway.distribute(beacon.vid, beacon.sid, result)
        unknown = [{"path": p, "kind": k} for p, k in beacon.batch.unknown]
        return JSONResponse({"ack": result.ack, **({"unknown_events": unknown} if unknown else {})}, headers=self._cors(origin))

    # ------------------------------------------------------------------ public rule snapshot

    async def rules_snapshot(self, request: Request) -> Response:
        """The live rules document for a site's pages (offline mode, docs/PYWASM.md), opt-in.

        404 unless `serve --public-rules`. A browser page must be on an origin of the site's
        allow-list, as for the beacon; a same-origin GET carries no Origin header, so then the
        request's own origin is checked when the browser says `Sec-Fetch-Site: same-origin`.
        This gates which pages can read the rules in a browser, not who can: with the flag on,
        treat the rule set as public.
        """
        if not self.settings.public_rules:
            return error(404, "not_enabled", "the rule snapshot is off: start the server with --public-rules")
        site = request.query_params.get("site", "")
        if site not in self.settings.sites:
            return error(403, "unknown_site", f"site {site!r} is not configured")
        origin = request.headers.get("origin")
        if origin is None and request.headers.get("sec-fetch-site") == "same-origin":
            origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if not self.settings.origin_allowed(site, origin):
            return error(403, "origin_not_allowed", f"origin {origin!r} is not allowed for site {site!r}")
        # The document alone (no per-process revision counter), so every worker gives one ETag.
        body = ujson.dumps(self.rulebook.doc, ensure_ascii=False, escape_forward_slashes=False, sort_keys=True).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {**self._cors(request.headers.get("origin")), "Cache-Control": "no-cache", "ETag": etag,
                   "Access-Control-Expose-Headers": "ETag"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    # ------------------------------------------------------------------ admin API

    def _auth(self, request: Request) -> Response | None:
        token = self.settings.admin_token
        if not token:
            return error(403, "admin_disabled", "no admin token is configured (MICROADJUST_ADMIN_TOKEN or --admin-token)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return JSONResponse({"error": "unauthorized", "detail": "Authorization: Bearer <token> required"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error(403, "forbidden", "wrong admin token")
        return None

    async def _json(self, request: Request) -> Any:
        body = await request.body()
        try:
            return jsonfast.loads(body)  # RFC 8259 only: no NaN, Infinity or lone surrogates
        except ValueError as exc:
            raise _BadBody(f"body is not valid JSON ({exc})") from None

    def _rules_view(self) -> dict[str, Any]:
        rb = self.rulebook
        return {"revision": rb.revision, "file": str(rb.path) if rb.path else None,
                "reload_error": rb.reload_error, "doc": rb.doc}

    async def _apply(self, doc: Any, status: int = 200, **extra: Any) -> Response:
        """Make `doc` live: a whole document, or an edit of the live one (`Rulebook.replace`)."""
        try:
            errors = await self.rulebook.replace(doc)
        except RulesUnavailable as exc:
            return error(503, "unavailable", str(exc))
        except RuleEdit as exc:
            return error(exc.status, exc.code, exc.msg)
        if errors:
            return error(422, "invalid_rules", "the rule set was rejected; the previous one stays live", errors=errors)
        return JSONResponse({**extra, **self._rules_view()}, status_code=status)

    async def rules(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if request.method == "GET":
            return JSONResponse(self._rules_view())
        try:
            body = await self._json(request)
        except _BadBody as exc:
            return error(400, "bad_json", str(exc))
        if request.method == "PUT":  # replace the whole document
            if not isinstance(body, dict):
                return error(422, "invalid_rules", "expected a rules document", errors=[{"path": "", "msg": "expected object"}])
            return await self._apply(body)
        # POST: add one rule
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return error(422, "invalid_rules", "expected a rule object with an id", errors=[{"path": "id", "msg": "required"}])
        rule_id = body["id"]

        def add(live: dict[str, Any]) -> dict[str, Any]:
            if find_rule(live, rule_id) is not None:
                raise RuleEdit(409, "exists", f"rule {rule_id!r} already exists; PUT /v1/admin/rules/{rule_id} replaces it")
            return {**live, "rules": [*live.get("rules", []), body]}

        return await self._apply(add, status=201, rule=rule_id)

    async def rule(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        rule_id = request.path_params["id"]
        if request.method == "GET":
            current = self.rulebook.rule(rule_id)
            if current is None:
                return error(404, "not_found", f"no rule {rule_id!r}")
            return JSONResponse(current)
        # Edits are functions of the live document, applied under the rule book's lock: a
        # change that lands while this request's body is read is kept, not written over.
        if request.method == "DELETE":
            def delete(live: dict[str, Any]) -> dict[str, Any]:
                current = find_rule(live, rule_id)
                if current is None:
                    raise RuleEdit(404, "not_found", f"no rule {rule_id!r}")
                return {**live, "rules": [r for r in live.get("rules", []) if r is not current]}

            return await self._apply(delete, deleted=rule_id)
        try:
            body = await self._json(request)
        except _BadBody as exc:
            return error(400, "bad_json", str(exc))
        if not isinstance(body, dict):
            return error(422, "invalid_rules", "expected a rule object", errors=[{"path": "", "msg": "expected object"}])
        if body.setdefault("id", rule_id) != rule_id:
            return error(422, "invalid_rules", "the body's id differs from the URL's", errors=[{"path": "id", "msg": f"expected {rule_id!r}"}])
        created = False

        def put(live: dict[str, Any]) -> dict[str, Any]:
            nonlocal created
            current = find_rule(live, rule_id)
            rules = list(live.get("rules", []))
            if current is None:
                created = True
                rules.append(body)
            else:
                rules = [body if r is current else r for r in rules]
            return {**live, "rules": rules}

        response = await self._apply(put, rule=rule_id)
        if created and response.status_code == 200:
            response.status_code = 201
        return response

    async def rules_validate(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await self._json(request)
        except _BadBody as exc:
            return error(400, "bad_json", str(exc))
        errors = self.rulebook.validate(body)
        if errors:
            return error(422, "invalid_rules", f"{len(errors)} problem(s)", errors=errors)
        return JSONResponse({"ok": True, "rules": len(body.get("rules", [])) if isinstance(body, dict) else 0})

    async def visitor(self, request: Request) -> Response:
        """Privacy export (GET) and erasure (DELETE) of one visitor, admin token required.

        Erasure removes the profile, sessions, outboxes, presence and logged events
        (docs/SCALING.md, "Export and erasure") and, in Redis mode, tells every process.
        """
        denied = self._auth(request)
        if denied is not None:
            return denied
        vid = request.path_params["id"]
        if not P._ID.fullmatch(vid):  # PROTOCOL §2.2 id pattern
            return error(400, "bad_id", "visitor id: expected [A-Za-z0-9_-]{8,64}")
        from .store import StoreUnavailable

        try:
            if request.method == "GET":
                exported = await self.store.export_visitor(vid)
                if getattr(self.gateway, "bus", None) is None and isinstance(exported.get("sessions"), dict):
                    # Embedded mode: the resume outbox lives in the gateway, not the store.
                    for sid, session in exported["sessions"].items():
                        session["outbox"] = self.gateway.outbox.messages(vid, sid)
                return JSONResponse(exported)
            # This process's sockets of the visitor first: a batch they carry while the store
            # and the log are erased would otherwise leave data behind the erasure.
            for conn in list(self.gateway.registry.by_visitor.get(vid, ())):
                await conn.close(1000, "")
            await self.store.erase_visitor(vid)
            self.gateway.forget_visitor(vid)
            bus = getattr(self.gateway, "bus", None)
            if bus is not None:
                await bus.publish_erase(vid)
        except StoreUnavailable as exc:
            return error(503, "unavailable", str(exc))
        return Response(status_code=204)

    async def admin_stats(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        s = self.stats
        sessions = dict(s.sessions)
        sid = request.query_params.get("sid")
        if sid is not None:
            sessions = {sid: sessions.get(sid, 0)}
        return JSONResponse({
            "connections": s.connections,
            "connections_total": s.connections_total,
            "events": s.events,
            "duplicates": s.duplicates,
            "patches": s.patches,
            "reverts": s.reverts,
            "beacons": s.beacons,
            "reports": s.reports,
            "rejected": s.rejected,
            "latency": s.latency(),
            "sessions": sessions,
            "rules_revision": self.rulebook.revision,
        })

    # ------------------------------------------------------------------ demo

    def demo_page(self, name: str):
        async def page(request: Request) -> Response:
            return FileResponse(DEMO_DIR / name, media_type="text/html; charset=utf-8",
                                headers={"Content-Security-Policy": DEMO_CSP})
        return page

    async def demo_asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        types = {".css": "text/css; charset=utf-8", ".js": "application/javascript; charset=utf-8", ".svg": "image/svg+xml"}
        path = DEMO_DIR / name
        if "/" in name or name.startswith(".") or path.suffix not in types or not path.is_file():
            return error(404, "not_found", f"no demo asset {name!r}")
        return FileResponse(path, media_type=types[path.suffix], headers={"Cache-Control": "public, max-age=60"})


class _BadBody(Exception):
    pass
