"""Structured logs: one JSON object per line, with the visitor, session and request they concern.

`microadjust serve --log-format json` (the default when stderr is not a terminal, i.e. under
systemd, Docker or Kubernetes) writes every record, uvicorn's included, as

    {"ts": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "microadjust.gateway",
     "msg": "...", "pid": 4242, "vid": "v_...", "sid": "s_...", "rid": "..."}

`vid`/`sid` are set once a socket's hello is read (`bind`, a context variable: every record
logged by that connection's task carries them); `rid` is the request id of an HTTP request
(the client's `X-Request-Id` when it sends a sane one, else a fresh one), echoed in the
response's `X-Request-Id`. A traceback goes in `exc`. `--log-format text` keeps the classic
one-line format for a terminal.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import re
import secrets
import sys

_vid: contextvars.ContextVar[str | None] = contextvars.ContextVar("ma_vid", default=None)
_sid: contextvars.ContextVar[str | None] = contextvars.ContextVar("ma_sid", default=None)
_rid: contextvars.ContextVar[str | None] = contextvars.ContextVar("ma_rid", default=None)

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SANE_RID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def bind(vid: str | None = None, sid: str | None = None) -> None:
    """Attach a visitor and session to every record logged from the current task from now on."""
    if vid is not None:
        _vid.set(vid)
    if sid is not None:
        _sid.set(sid)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, pid, and vid/sid/rid when known."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process or os.getpid(),
        }
        for key, var in (("vid", _vid), ("sid", _sid), ("rid", _rid)):
            value = var.get()
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def default_format() -> str:
    """json unless stderr is a terminal (a person reading it)."""
    return "text" if sys.stderr.isatty() else "json"


def configure(fmt: str, level: str = "info") -> None:
    """Route every logger (microadjust's, uvicorn's, redis') to one stderr handler in `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler._microadjust = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        # Replace our own handler from an earlier call (and a bare default one); leave handlers
        # someone else installed (a test runner's capture) alone.
        if getattr(old, "_microadjust", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # uvicorn's access log is one line per HTTP request; keep it at the chosen level.
    logging.getLogger("uvicorn.access").setLevel(level.upper())


class RequestIdMiddleware:
    """ASGI middleware: a request id per HTTP request, in the logs (`rid`) and the response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_RID.fullmatch(given) else secrets.token_hex(8)
        token = _rid.set(rid)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _rid.reset(token)
