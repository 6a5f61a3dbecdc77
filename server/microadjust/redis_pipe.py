"""One multiplexed Redis connection with automatic pipelining, for the per-batch hot path.

redis-py's asyncio client takes a pooled connection per command: with 200 sockets each sending a
batch, 200 Redis connections each carry one command at a time, so every batch costs a write
system call, a read wake-up and a pool round on both sides (and Redis usually shares the
machine). This connection instead queues every command issued during one event-loop iteration and
writes them with a single `write`; Redis answers them in order, with one read for many replies
(what ioredis calls auto-pipelining). Replies are parsed by hiredis.

Used by `RedisStore` (load, commit) and `RedisBus` (publish) on a single Redis; a Redis Cluster
keeps redis-py's cluster client, which routes by slot. Everything else (scripts run rarely,
pub/sub, the fault probe) stays on redis-py. Measured in docs/PERFORMANCE.md.

Failure semantics match what the store expects from redis-py: a lost connection fails every
command in flight with `ConnectionError` (the caller cannot know whether a script ran; the store
buffers either way), a command without an answer within `timeout` raises `TimeoutError` and drops
the connection (with every command behind it), and the next command reconnects. Replies come in
order, so one watchdog timer per connection checks the oldest unanswered command (every quarter
of `timeout`) instead of a timer per command.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    BusyLoadingError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

# Error replies by their first word, as redis-py's own parser types them (the store tells "Redis
# refuses writes now" from a bug by these types: store.redis.REDIS_DOWN_ERRORS).
_ERRORS = {
    "NOSCRIPT": NoScriptError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "LOADING": BusyLoadingError,
    "MASTERDOWN": MasterDownError,
}


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: "AutoPipeline") -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.owner._received(self, data)

    def connection_lost(self, exc) -> None:
        self.owner._lost(self, exc)


class AutoPipeline:
    """Commands from every coroutine share one connection and go out together per loop turn."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.db, self.username, self.password = db, username, password
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future | None = None
        self._reader: Any = None
        self._pending: deque[asyncio.Future] = deque()
        self._sent_at: deque[float] = deque()  # loop time each pending command was queued
        self._watchdog: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closed = False
        self.writes = 0  # write calls made (one per loop turn with commands): for tests and docs
        self.commands = 0

    @classmethod
    def for_client(cls, client: Any, timeout: float) -> "AutoPipeline | None":
        """An auto-pipeline to the same Redis as a redis-py asyncio `Redis` client, or None when
        its connection kind is not one this class speaks (the caller keeps using redis-py)."""
        pool = getattr(client, "connection_pool", None)
        if pool is None:
            return None
        kw = pool.connection_kwargs
        kind = pool.connection_class.__name__
        common = dict(
            db=int(kw.get("db") or 0),
            username=kw.get("username"),
            password=kw.get("password"),
            timeout=timeout,
        )
        if kind == "Connection":
            return cls(host=kw.get("host", "localhost"), port=int(kw.get("port", 6379)), **common)
        if kind == "UnixDomainSocketConnection":
            return cls(path=kw["path"], **common)
        return None  # TLS and custom connection classes: redis-py handles them

    # ------------------------------------------------------------------ connection

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self.path:
            _, proto = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
        else:
            _, proto = await loop.create_connection(lambda: _Protocol(self), self.host, self.port)
        self._reader = hiredis.Reader(encoding="utf-8")
        self._proto = proto
        self._watchdog = loop.call_later(self.timeout / 4, self._watch, proto)
        # AUTH / SELECT go first on the new connection; their replies are checked like any other.
        setup = []
        if self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            setup.append(self._send(auth))
        if self.db:
            setup.append(self._send(("SELECT", self.db)))
        try:
            for fut in setup:
                await fut
        except ResponseError as exc:
            # A wrong password or db reads as an unusable Redis, as in redis-py (its
            # AuthenticationError is a ConnectionError): the store degrades and /readyz is red.
            self._drop(AuthenticationError(f"redis refused the connection set-up: {exc}"))
            raise AuthenticationError(f"redis refused the connection set-up: {exc}") from exc
        return proto

    async def _ensure(self) -> None:
        if self._proto is not None:
            return
        if self._closed:
            raise RedisConnectionError("connection closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(connecting)
        except (OSError, TimeoutError) as exc:  # asyncio.TimeoutError is TimeoutError (3.11+)
            if self._connecting is connecting:
                self._connecting = None
                if not connecting.done():
                    connecting.cancel()
            raise RedisConnectionError(f"cannot connect to redis: {exc!r}") from exc
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None

    def _received(self, proto: _Protocol, data: bytes) -> None:
        if proto is not self._proto:
            return
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        sent_at = self._sent_at
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step
                self._drop(RedisConnectionError("unexpected reply from redis"))
                return
            fut = pending.popleft()
            sent_at.popleft()
            if fut.done():
                continue  # its caller was cancelled; the reply is discarded in order
            if isinstance(reply, hiredis.ReplyError):
                msg = str(reply)
                fut.set_exception(_ERRORS.get(msg.split(" ", 1)[0], ResponseError)(msg))
            else:
                fut.set_result(reply)

    def _lost(self, proto: _Protocol, exc: BaseException | None) -> None:
        if proto is self._proto:
            self._drop(RedisConnectionError(f"connection to redis lost: {exc!r}" if exc else "connection to redis closed"))

    def _watch(self, proto: _Protocol) -> None:
        if proto is not self._proto:
            return
        loop = asyncio.get_running_loop()
        if self._sent_at and loop.time() - self._sent_at[0] > self.timeout:
            self._drop(RedisTimeoutError(f"redis did not answer within {self.timeout}s"))
            return
        self._watchdog = loop.call_later(self.timeout / 4, self._watch, proto)

    def _drop(self, error: BaseException) -> None:
        """Forget the connection and fail every command in flight with `error`."""
        proto, self._proto = self._proto, None
        pending, self._pending = self._pending, deque()
        self._sent_at.clear()
        self._out.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: a caller that was cancelled meanwhile logs nothing
        if proto is not None and proto.transport is not None:
            proto.transport.abort()

    # ------------------------------------------------------------------ commands

    def _send(self, args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._out.append(hiredis.pack_command(args))
        self._pending.append(fut)
        self._sent_at.append(loop.time())
        self.commands += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        if self._proto is None or self._proto.transport is None:
            # The connection went between the send and this flush: the commands were never
            # written, so nothing would ever answer them (and no watchdog runs without a
            # connection). They fail now, as commands on a lost connection do.
            self._drop(RedisConnectionError("redis connection lost before the command was sent"))
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self.writes += 1
        self._proto.transport.write(data)

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (errors raise redis-py's exception types)."""
        if self._proto is None:
            await self._ensure()
            if self._proto is None:  # connected, then dropped at once (e.g. max clients reached)
                raise RedisConnectionError("redis connection lost right after it was made")
        return await self._send(args)

    async def eval_script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA a redis-py `Script` (its `sha` and `script`), loading it on NOSCRIPT."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        self._drop(RedisConnectionError("connection closed"))


def run_script(pipe: AutoPipeline | None, script: Any, keys: list[str], args: list[Any]):
    """Run a redis-py `Script` on `pipe` when there is one, else through redis-py (a cluster or
    TLS): the one dispatch the store and the bus share for their per-batch scripts."""
    if pipe is not None:
        return pipe.eval_script(script, keys, args)
    return script(keys=keys, args=args)
