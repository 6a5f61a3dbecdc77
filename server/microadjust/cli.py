"""The `microadjust` command: `serve` the engine, `rules validate` a rules file.

    microadjust serve [--demo] [--public-rules] [--rules FILE] [--host 127.0.0.1] [--port 8000]
                      [--site KEY=ORIGIN,...] [--admin-token T] [--data-dir D] [--log-level L]
                      [--log-format json|text] [--redis URL] [--workers N] [--drain-timeout S]
    microadjust rules validate FILE

Errors a user can fix (missing file, bad JSON, a bad site spec, a broken rule set) print one
message naming the problem and exit with status 1 (2 for wrong usage), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import sys
import threading
from pathlib import Path

from . import logs, transport
from .settings import Limits, Settings, SettingsError, admin_token_from_env, parse_sites

log = logging.getLogger("microadjust.cli")

DEMO_RULES = Path(__file__).parent / "demo" / "rules.json"


class Server:
    """uvicorn, configured per docs/SERVER.md, draining on SIGTERM (PROTOCOL §7, docs/SCALING.md).

    uvicorn would close open WebSockets with 1012 before the app's lifespan shutdown runs, so
    the drain runs first, in this order: `/readyz` turns red and new upgrades get 503, the
    listening sockets close (no new connections), every socket is closed with 4010 `draining`,
    uvicorn waits for in-flight HTTP requests, and the lifespan flushes the store's buffered
    writes with what is left of `limits.drain_timeout_s`. `run()` (a real process) also arms a
    watchdog that ends the process if the drain overruns its bound by 2 s.
    """

    def __init__(self, app, settings: Settings, log_level: str = "info") -> None:
        import uvicorn

        gateway = app.state.gateway
        drain_s = settings.limits.drain_timeout_s
        outer = self

        class _Uvicorn(uvicorn.Server):
            async def shutdown(self, sockets=None):
                gateway.begin_drain(drain_s)  # /readyz red first
                log.info("draining (bound %.1f s)", drain_s)
                if outer.hard_exit:
                    _arm_watchdog(drain_s + 2.0)
                for server in getattr(self, "servers", ()):
                    server.close()  # stop accepting
                await gateway.drain()
                # What is left is shared between in-flight HTTP requests and the store's flush.
                self.config.timeout_graceful_shutdown = max(0.1, gateway.drain_left() / 2)
                await super().shutdown(sockets)
                log.info("drained")

            @contextlib.contextmanager
            def capture_signals(self):
                with super().capture_signals():
                    yield
                    # uvicorn re-raises the signal once it has shut down (exit status -15); a
                    # completed drain is a clean exit, so the process ends with status 0.
                    self._captured_signals.clear()

        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            # /v1/stream goes straight to the gateway (transport.py): no ASGI queue, scope or
            # middleware per socket. It never offers permessage-deflate (§1: tens of KB per
            # connection) and has no ping timer (the protocol has its own heartbeat, §6).
            ws=transport.protocol_class(gateway),
            ws_max_size=settings.limits.max_frame,  # 1009 for oversized frames (§7)
            log_level=log_level,
            log_config=None,  # logs.configure() owns the handlers (json or text)
            lifespan="on",
            timeout_graceful_shutdown=drain_s,
        )
        self.uvicorn = _Uvicorn(config)
        self.hard_exit = False

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        self.hard_exit = True
        self.uvicorn.run(sockets=sockets)

    async def serve(self) -> None:
        await self.uvicorn.serve()


def _arm_watchdog(seconds: float) -> None:
    """The drain bound is a promise to the orchestrator: past it (plus slack), exit anyway."""

    def expire() -> None:
        log.error("drain did not finish within %.1f s; exiting", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket with SO_REUSEPORT: every worker binds its own on
    the same port and the kernel spreads new connections over the listening ones."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _fail(msg: str) -> int:
    print(f"microadjust: {msg}", file=sys.stderr)
    return 1


def _load_rules_or_fail(path: Path):
    from . import engine
    from .rulebook import read_rules_file

    doc = read_rules_file(path)  # RulesFileError propagates to the caller
    try:
        engine.compile_rules(doc)
    except engine.RuleSetError as exc:
        return doc, exc.errors
    return doc, []


def cmd_rules_validate(args) -> int:
    from .rulebook import RulesFileError

    try:
        doc, errors = _load_rules_or_fail(Path(args.file))
    except RulesFileError as exc:
        return _fail(str(exc))
    if errors:
        print(f"{args.file}: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  {e['path'] or '(document)'}: {e['msg']}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({len(doc.get('rules', []))} rules)")
    return 0


def build_settings(args) -> Settings:
    sites: dict[str, list[str]] = {}
    for spec in args.site or []:
        for key, origins in parse_sites(spec).items():
            sites.setdefault(key, []).extend(origins)
    if args.demo:
        sites.setdefault("demo", []).extend([f"http://127.0.0.1:{args.port}", f"http://localhost:{args.port}"])
    rules = Path(args.rules) if args.rules else None
    if rules is None and args.demo:
        rules = DEMO_RULES
    return Settings(
        host=args.host,
        port=args.port,
        sites=sites,
        admin_token=args.admin_token or admin_token_from_env(),
        rules_file=rules,
        data_dir=Path(args.data_dir),
        demo=args.demo,
        public_rules=args.public_rules,
        redis_url=args.redis or os.environ.get("MICROADJUST_REDIS_URL") or None,
        redis_cluster=args.redis_cluster,
        workers=args.workers,
        retention_s=args.retention,
        limits=Limits(**{"drain_timeout_s": args.drain_timeout, **dict(args.limit or ())}),
    )


def cmd_serve(args) -> int:
    from .rulebook import RulesFileError

    logs.configure(args.log_format or logs.default_format(), args.log_level)
    try:
        settings = build_settings(args)
    except SettingsError as exc:
        return _fail(str(exc))
    if not settings.sites:
        return _fail("no site configured: pass --site KEY=ORIGIN (e.g. --site shop=https://shop.example) or --demo")
    if settings.rules_file is not None:
        try:
            _, errors = _load_rules_or_fail(settings.rules_file)
        except RulesFileError as exc:
            return _fail(str(exc))
        if errors:
            lines = "\n".join(f"  {e['path'] or '(document)'}: {e['msg']}" for e in errors)
            return _fail(f"rules file {settings.rules_file}: {len(errors)} problem(s):\n{lines}")
        if settings.rules_file == DEMO_RULES:
            # Admin API edits are written back to the rules file: the demo edits a copy in the
            # data dir, fresh from the shipped rules at every start, never the installed package.
            copy = Path(settings.data_dir) / "demo-rules.json"
            try:
                Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
                # copy2 keeps the shipped file's mtime: in Redis mode a fresh copy must not count
                # as an edit newer than the fleet's shared rule set (rulebook.attach).
                shutil.copy2(DEMO_RULES, copy)
            except OSError as exc:
                return _fail(f"data dir {settings.data_dir}: cannot write {copy.name} ({exc.strerror})")
            settings.rules_file = copy
            print(f"microadjust: demo rules copied to {copy} (edits there are hot-reloaded)", flush=True)
    if settings.demo and not settings.admin_token:
        settings.admin_token = secrets.token_urlsafe(24)
        print(f"microadjust: demo admin token (generated): {settings.admin_token}", flush=True)
    try:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"data dir {settings.data_dir}: {exc.strerror}")
    if settings.workers > 1:
        from .workers import Supervisor

        if settings.demo:
            print(f"microadjust: demo shop on http://{settings.host}:{settings.port}/", flush=True)
        return Supervisor(settings, args).run()
    from .app import create_app  # not before: the supervisor must not import the metrics

    sockets = None
    if args.worker_index is not None:
        from .workers import become_worker

        try:
            sockets = [become_worker(settings)]
        except OSError as exc:
            return _fail(f"worker {args.worker_index}: cannot bind {settings.host}:{settings.port} ({exc.strerror})")
    try:
        app = create_app(settings)
    except ValueError as exc:
        if not settings.redis_url:
            raise
        return _fail(f"--redis {settings.redis_url}: {exc}")  # e.g. an unsupported URL scheme
    if settings.demo and args.worker_index is None:
        print(f"microadjust: demo shop on http://{settings.host}:{settings.port}/", flush=True)
    server = Server(app, settings, args.log_level.lower())
    server.run(sockets) if sockets else server.run()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microadjust", description="Real-time micro-adjustments of web pages.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--demo", action="store_true", help="serve the demo shop with its rules (site 'demo')")
    s.add_argument("--public-rules", action="store_true", help="serve the live rule set at GET /v1/rules/snapshot?site=KEY "
                   "to the site's pages (offline mode, docs/PYWASM.md); it exposes the rules to visitors")
    s.add_argument("--rules", metavar="FILE", help="rules JSON file (watched; admin API changes are written back)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000)
    s.add_argument("--site", action="append", metavar="KEY=ORIGIN,...", help="a site and its page origins (repeatable)")
    s.add_argument("--admin-token", metavar="T", help="bearer token of the admin API (default: $MICROADJUST_ADMIN_TOKEN)")
    s.add_argument("--data-dir", default="data", metavar="D", help="event log directory (default ./data)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument("--redis", metavar="URL", help="production mode on Redis: redis://host:6379/0 or "
                   "redis+cluster://h1:7000,h2:7000 (default: $MICROADJUST_REDIS_URL; none = embedded store)")
    s.add_argument("--redis-cluster", action="store_true", help="treat a redis:// URL as a Redis Cluster seed")
    s.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="N processes sharing the port (SO_REUSEPORT), each a full peer; N > 1 needs --redis")
    s.add_argument("--drain-timeout", type=_seconds, default=Limits.drain_timeout_s, metavar="S",
                   help="on SIGTERM: close sockets with 4010, flush writes and exit within S seconds (default 10)")
    s.add_argument("--retention", type=_duration, default=Settings.retention_s, metavar="D",
                   help="drop a visitor's profile after this much inactivity, in both stores: seconds, "
                   "or a number with s, m, h or d (default 30d)")
    s.add_argument("--limit", action="append", type=_limit, metavar="NAME=VALUE",
                   help="override one limit of docs/SERVER.md 'Limits' (repeatable), e.g. rate_per_s=50")
    s.add_argument("--log-format", choices=logs.FORMATS, default=None,
                   help="json (one object per line; the default when stderr is not a terminal) or text")
    s.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by --workers
    s.set_defaults(func=cmd_serve)
    r = sub.add_parser("rules", help="rule set tools")
    rsub = r.add_subparsers(dest="rules_command", required=True)
    v = rsub.add_parser("validate", help="check a rules file; exit 1 with path errors")
    v.add_argument("file")
    v.set_defaults(func=cmd_rules_validate)
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def _port(text: str) -> int:
    """A TCP port: 0 (any free port) to 65535 (the OS would take a larger number modulo 65536)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: a port is 0 to 65535")
    return value


def _limit(text: str) -> tuple[str, float | int]:
    """`NAME=VALUE` for one field of Limits, typed like its default and positive."""
    name, sep, raw = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    if not sep or name not in fields:
        known = ", ".join(sorted(fields))
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with NAME one of {known}")
    kind = type(fields[name].default)
    try:
        value = kind(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {raw!r} is not a {'whole number' if kind is int else 'number'}") from None
    if not value > 0 and not (name == "tick_ms" and value == 0):  # tick_ms 0 turns ticks off
        raise argparse.ArgumentTypeError(f"{name}: {raw!r} must be above 0")
    return name, value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> int:
    """`--retention`: whole seconds from `2592000`, `30d`, `12h`, `90m` or `45s`."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], None)
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds or a number with s, m, h or d, e.g. 30d") from None
    if not 1 <= value <= 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: expected between 1 second and 10 years")
    return int(value)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value:g}: expected seconds in (0, 3600]")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
