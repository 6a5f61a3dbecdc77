"""`create_app(settings)`: the whole server assembled from explicit parts, in one visible place.

Tests swap any part: `create_app(settings, store=..., engine=..., log=...)`. The engine is the
module `microadjust.engine` by default (anything with `compile_rules`, `evaluate`,
`validate_patch` and `RuleSetError`). The parts are kept on `app.state` (`gateway`,
`rulebook`, `stats`, `store`, `log`) for the CLI and for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from . import metrics

from .eventlog import EventLog
from .gateway import Gateway, Ingest, Registry, Stats
from .http import Routes
from .logs import RequestIdMiddleware
from .looplag import LoopLag
from .rulebook import Rulebook
from .settings import Settings
from .simulator import simulator_routes
from .store import Store
from .store.memory import MemoryStore

log = logging.getLogger("microadjust")


def create_app(settings: Settings, *, store: Store | None = None, engine=None, log=None, rules_doc=None) -> Starlette:
    if engine is None:
        from . import engine as engine_module

        engine = engine_module
    mode = None
    if store is None and settings.redis_url:
        # Production mode (docs/SCALING.md): store, bus and event log on Redis.
        from .redis_bus import RedisBus
        from .redis_log import RedisEventLog
        from .store.redis import RedisStore

        cluster = settings.redis_cluster or None
        store = RedisStore(settings.redis_url, cluster=cluster, retention_s=settings.retention_s)
        limits = settings.limits
        # An outbox never outlives the session it belongs to: an erasure finds outboxes through the
        # session set, which expires with the retention.
        bus = RedisBus(settings.redis_url, cluster=cluster, outbox_size=limits.outbox_size,
                       outbox_ttl_s=min(limits.outbox_ttl_s, settings.retention_s))
        mode = (bus, RedisEventLog(settings.redis_url, cluster=cluster))
    if store is None:
        if log is None:
            log = EventLog(settings.event_log_path, settings.event_log_max_bytes, settings.event_log_backups)
        store = MemoryStore(log=log, retention_s=settings.retention_s,
                            max_visitors=settings.limits.store_visitors,
                            max_sessions_per_visitor=settings.limits.store_sessions_per_visitor)
    rulebook = Rulebook(engine, doc=rules_doc, path=settings.rules_file, poll_s=settings.rules_poll_s)
    stats = Stats()
    ingest = Ingest(store, engine, rulebook, stats, retries=settings.limits.commit_retries)
    gateway = Gateway(settings, ingest, stats, Registry())
    routes = Routes(settings, gateway, rulebook, stats, store)

    if mode is not None:
        from .redis_bus import attach_gateway

        attach_gateway(mode[0], gateway, store)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if mode is not None:
            from .store.redis import REDIS_DOWN_ERRORS

            try:
                await mode[0].start()
            except (asyncio.TimeoutError, OSError, *REDIS_DOWN_ERRORS) as exc:  # keeps retrying
                logging.getLogger("microadjust").warning("redis bus not subscribed yet: %s", exc)
            # Rules live in Redis: every process swaps in a change made through any of them.
            mode[0].on_change = rulebook.adopt
            await rulebook.attach(mode[0])
        rulebook.start()
        # Everything built so far (modules, compiled rules, the app) lives as long as the
        # process: move it out of the collector's reach, so that a full collection under load
        # walks only objects made since (a latency-tail measure; docs/PERFORMANCE.md).
        gc.collect()
        gc.freeze()
        lag = app.state.looplag = LoopLag()
        lag.start()
        try:
            yield
        finally:
            lag.stop()
            # Normally the runner already drained the sockets (4010) before the ASGI server tore
            # them down (see cli.Server); this covers other ASGI servers.
            await gateway.drain()
            await rulebook.stop()
            # Flush buffered writes (Redis mode: the outage buffer and pending events) within
            # what is left of the drain bound, then leave presence and disconnect.
            await store.close(timeout=max(gateway.drain_left(), 0.5))
            if mode is not None:
                await mode[0].close()
                await mode[1].close()
            if log is not None and getattr(store, "log", None) is not log:
                log.close()

    app = Starlette(
        routes=[WebSocketRoute("/v1/stream", gateway.endpoint), Route("/metrics", metrics.endpoint), *routes.routes(),
                *simulator_routes()],
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.rulebook = rulebook
    app.state.stats = stats
    app.state.store = store
    app.state.log = log
    app.state.bus = mode[0] if mode is not None else None
    return app


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path, a method a route does not take) as JSON, like
    every other error of the API; its headers (`Allow` on a 405) are kept."""
    return JSONResponse(
        {"error": _HTTP_CODES.get(exc.status_code, "http_error"), "detail": exc.detail},
        status_code=exc.status_code, headers=exc.headers,
    )
