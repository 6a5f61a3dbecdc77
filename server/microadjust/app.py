"""`create_app(settings)`: the whole server assembled from explicit parts, in one visible place.

Tests swap any part: `create_app(settings, store=..., engine=..., log=...)`. The engine is the
module `microadjust.engine` by default (anything with `compile_rules`, `evaluate`,
`validate_patch` and `RuleSetError`). The parts are kept on `app.state` (`gateway`,
`rulebook`, `stats`, `store`, `log`) for the CLI and for tests.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from .eventlog import EventLog
from .gateway import Gateway, Ingest, Registry, Stats
from .http import Routes
from .rulebook import Rulebook
from .settings import Settings
from .store import Store
from .store.memory import MemoryStore

log = logging.getLogger("microadjust")


def create_app(settings: Settings, *, store: Store | None = None, engine=None, log=None, rules_doc=None) -> Starlette:
    if engine is None:
        from . import engine as engine_module

        engine = engine_module
    if store is None:
        if log is None:
            log = EventLog(settings.event_log_path, settings.event_log_max_bytes, settings.event_log_backups)
        store = MemoryStore(log=log)
    rulebook = Rulebook(engine, doc=rules_doc, path=settings.rules_file, poll_s=settings.rules_poll_s)
    stats = Stats()
    ingest = Ingest(store, engine, rulebook, stats, retries=settings.limits.commit_retries)
    gateway = Gateway(settings, ingest, stats, Registry())
    routes = Routes(settings, gateway, rulebook, stats, store)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        rulebook.start()
        try:
            yield
        finally:
            # Normally the runner already closed the sockets with 1001 before the ASGI server
            # tore them down (see cli.Server); this covers other ASGI servers.
            await gateway.shutdown()
            await rulebook.stop()
            await store.close()
            if log is not None and getattr(store, "log", None) is not log:
                log.close()

    app = Starlette(routes=[WebSocketRoute("/v1/stream", gateway.endpoint), *routes.routes()], lifespan=lifespan)
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.rulebook = rulebook
    app.state.stats = stats
    app.state.store = store
    app.state.log = log
    return app
