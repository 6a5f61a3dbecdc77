"""The WebSocket endpoint `/v1/stream` (PROTOCOL.md), and the batch path it shares with the beacon.

One `Connection` per socket runs a small state machine: AWAIT_HELLO -> OPEN -> CLOSING. It reads
frames one at a time (so a connection's batches are processed in order), writes its answers
itself, in the reader's task, and queues a message only while another write on the socket is
in progress (bounded; a close is always sent after the messages queued before it), and never
lets one client's bad input reach another: every failure ends in an error message or a
documented close code for that connection only.

`Ingest` is the one place a batch becomes stored events and patches: de-duplication by
(session, seq) (§3), the pure engine, the store's compare-and-set commit with retries, and
`pseq` numbering (§5). The socket and the HTTP beacon (§3.2) both call it, so both obey the
same rules. The gateway talks to a socket through the calls of `transport.StreamProtocol` (what
`microadjust serve` runs); under another ASGI server Starlette's WebSocket is wrapped to match
(`transport.AsgiSocket`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import jsonfast, logs, metrics
from . import protocol as P
from .outbox import LocalOutbox, Resume
from .rulebook import Rulebook
from .settings import Settings
from .store import Store
from .store import StoreUnavailable
from .transport import AsgiSocket, StreamProtocol

log = logging.getLogger("microadjust.gateway")

# Event-to-paint buckets (ms, upper bounds): one frame at 60 Hz is 16.7 ms; the product's goal
# is "within milliseconds" after the network, so the interesting range is 5 ms .. 1 s.
LATENCY_BUCKETS_MS = (5, 10, 16, 25, 33, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)


class CommitFailed(Exception):
    """The batch could not be stored (conflicts exhausted or store unavailable); it is not acked."""


# ---------------------------------------------------------------------------- statistics


class Stats:
    """What `/v1/admin/stats` shows: counters, the event-to-paint histogram, per-session counts."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self.connections = 0
        self.connections_total = 0
        self.events = 0
        self.duplicates = 0
        self.patches = 0
        self.reverts = 0
        self.beacons = 0
        self.reports: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.recent: deque[float] = deque(maxlen=1000)
        # Bounded (LRU): stats must not grow with the number of sessions ever seen.
        self.sessions: OrderedDict[str, int] = OrderedDict()
        self.max_sessions = max_sessions

    def stored(self, sid: str, events: list[dict[str, Any]]) -> None:
        n = len(events)
        self.events += n
        self.sessions[sid] = self.sessions.get(sid, 0) + n
        self.sessions.move_to_end(sid)
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)
        counts: dict[str, int] = {}
        for e in events:
            k = e["k"]
            counts[k] = counts.get(k, 0) + 1
        for k, c in counts.items():  # one counter update per kind, not per event
            metrics.labelled(metrics.EVENTS, k).inc(c)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        metrics.labelled(metrics.REJECTED_FRAMES, reason).inc()

    def applied(self, report: P.Applied) -> None:
        self.reports[report.status] = self.reports.get(report.status, 0) + 1
        metrics.labelled(metrics.PATCH_REPORTS, report.status).inc()
        if report.ms is None or report.status not in ("applied", "delegated"):
            return
        ms = float(report.ms)
        i = 0
        while i < len(LATENCY_BUCKETS_MS) and ms > LATENCY_BUCKETS_MS[i]:
            i += 1
        self.buckets[i] += 1
        self.latency_sum += ms
        self.latency_count += 1
        self.recent.append(ms)
        metrics.EVENT_TO_PIXEL_SECONDS.observe(ms / 1000)

    def latency(self) -> dict[str, Any]:
        recent = sorted(self.recent)

        def pct(p: float) -> float | None:
            return round(recent[min(len(recent) - 1, int(p * len(recent)))], 2) if recent else None

        buckets, cum = [], 0
        for le, n in zip([*LATENCY_BUCKETS_MS, "+Inf"], self.buckets):
            cum += n
            buckets.append({"le": le, "count": cum})
        return {
            "count": self.latency_count,
            "mean_ms": round(self.latency_sum / self.latency_count, 2) if self.latency_count else None,
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
            "max_ms": round(recent[-1], 2) if recent else None,
            "buckets": buckets,  # cumulative, Prometheus style
        }


# ---------------------------------------------------------------------------- the batch path


@dataclass
class IngestResult:
    ack: int
    messages: list[dict[str, Any]] = field(default_factory=list)  # revert/patch messages with pseq
    stored: int = 0


class Ingest:
    """Batch -> de-duplicate -> engine.evaluate -> store.commit (CAS retry) -> ack + patches."""

    def __init__(self, store: Store, engine, rulebook: Rulebook, stats: Stats, retries: int = 8, clock=time.time) -> None:
        self.store = store
        self.engine = engine
        self.rulebook = rulebook
        self.stats = stats
        self.retries = retries
        self.clock = clock

    async def batch(self, vid: str, sid: str, consent: str, batch: P.Batch, pseq_floor: int = 0,
                    ack_floor: int = 0) -> IngestResult:
        """`pseq_floor`: number patches above it (§2.3: a client ahead of the server's state).
        `ack_floor`: events up to it were already acked on this socket (a resend of them is a
        duplicate even if the store forgot the session meanwhile)."""
        if consent != "granted":
            # §8: acknowledged so the tracker stops resending, but nothing is stored or evaluated
            # (cumulative: a resend below what this socket acked does not move the ack back).
            return IngestResult(ack=max(batch.last, ack_floor))
        return await self._run(vid, sid, batch, pseq_floor, ack_floor)

    async def tick(self, vid: str, sid: str, pseq_floor: int = 0) -> IngestResult | None:
        """Re-evaluate time-based rules without events; None when nothing needed storing."""
        return await self._run(vid, sid, None, pseq_floor)

    async def _run(self, vid: str, sid: str, batch: P.Batch | None, pseq_floor: int = 0,
                   ack_floor: int = 0) -> IngestResult | None:
        for _ in range(self.retries):
            snap = await self.store.load(vid, sid)
            if batch is not None:
                acked = snap.ack if snap.ack >= ack_floor else ack_floor
                if batch.last <= acked:
                    self.stats.duplicates += batch.size
                    return IngestResult(ack=acked)  # §3: a resend is never counted twice
                fresh = [e for e in batch.events if e["seq"] > acked]
                ack = batch.last
            else:
                fresh, ack = [], snap.ack
            now = int(self.clock() * 1000)
            t0 = time.perf_counter()
            result = self.engine.evaluate(snap.profile, fresh, now, self.rulebook.ruleset, consent="granted")
            metrics.DECISION_SECONDS.observe(time.perf_counter() - t0)
            messages, pseq = self._number(result, max(snap.pseq, pseq_floor))
            # A tick that moved nothing is not stored. Equality of the objects, not of their JSON
            # (a third of an idle tick's cost): they differ only where the JSON would say so, or
            # in a value's spelling alone (1 for 1.0, key order), which no reader tells apart.
            if batch is None and not messages and result["profile"] == snap.profile:
                return None
            # Only the store keeps the new profile from here on: a store that waits for a round
            # trip (Redis) would otherwise keep both profiles (hundreds of objects per batch in
            # flight) alive across it for the garbage collector to walk (docs/PERFORMANCE.md,
            # "Garbage collector: what a message allocates dies young").
            commit = self.store.commit(vid, sid, snap, result["profile"], ack, pseq, fresh)
            snap.profile = result = None
            try:
                ok = await commit
            except StoreUnavailable as exc:
                raise CommitFailed(str(exc)) from None
            if ok:
                if fresh:
                    self.stats.stored(sid, fresh)
                return IngestResult(ack=ack, messages=messages, stored=len(fresh))
        raise CommitFailed(f"session {sid}: {self.retries} compare-and-set conflicts in a row")

    def _number(self, result: dict[str, Any], pseq: int) -> tuple[list[dict[str, Any]], int]:
        """§5: one pseq per patch or revert message; reverts first so a replacement lands last."""
        out: list[dict[str, Any]] = []
        for pid in result.get("reverts", ()):
            pseq += 1
            out.append({"t": "revert", "pseq": pseq, "id": pid})
        for patch in result.get("patches", ()):
            errors = self.engine.validate_patch(patch)
            if errors:
                # The engine's own output broke the vocabulary: never send it (§5.1).
                log.error("engine rendered an invalid patch %r: %s", patch.get("id"), errors)
                continue
            pseq += 1
            out.append({"t": "patch", "pseq": pseq, "patch": patch})
        return out, pseq


# ---------------------------------------------------------------------------- connections


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    OPEN = "open"
    CLOSING = "closing"


@dataclass
class _Close:
    code: int
    reason: str


class Connection:
    """One socket: its identity after hello, its limits' counters and its outbound queue."""

    def __init__(self, ws: StreamProtocol | AsgiSocket, site: str, limits) -> None:
        self.ws = ws
        self.site = site
        self.limits = limits
        self.state = State.AWAIT_HELLO
        self.vid = ""
        self.sid = ""
        self.consent = "pending"
        # §2.3: a hello.pseq above the stored one (state expired or erased) numbers on from it, and
        # so does the last pseq this socket got (`saw`). `ack_floor`: the highest seq acked here.
        self.pseq_floor = 0
        self.ack_floor = 0
        # Between hello and welcome: messages for this session delivered while the welcome is
        # prepared wait here, so none falls between the resume read and the socket's registration.
        self.early: list[dict[str, Any]] | None = None
        self.bad = 0
        self.tokens = float(limits.rate_burst)
        self.refill_at = time.monotonic()
        self.strikes: deque[float] | None = None  # made at the first strike (most sockets have none)
        # Output. Whoever finds the socket idle writes at once, in its own task (the reader for
        # its acks and patches: no queue and no task hop on the answer path); a message that
        # arrives while a write is in progress waits in `outq` and the writer in progress sends
        # it next. A socket has no writer task and no queue of its own until it needs one
        # (docs/PERFORMANCE.md, "Per-socket overhead").
        self.sending = False
        self.outq: deque | None = None
        self.flusher: asyncio.Task | None = None  # drains `outq` for messages from elsewhere
        self._idle: list[asyncio.Future] | None = None  # waiting for the write in progress

    async def _pump(self, item: Any) -> None:
        """Write `item`, then what queued meanwhile, in order; the caller set `sending`."""
        try:
            while True:
                if isinstance(item, _Close):
                    self.outq = None  # nothing is written after the close frame
                    await self.ws.close(item.code, item.reason)
                    return
                # orjson straight to UTF-8 bytes; a list (an ack and the patches it brought)
                # leaves in one write.
                await self.ws.send_payloads([jsonfast.dumps(m) for m in item] if type(item) is list
                                            else [jsonfast.dumps(item)])
                if not self.outq:
                    return
                item = self.outq.popleft()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.state = State.CLOSING  # the peer is gone; the reader will see it too
            self.outq = None
        finally:
            self.sending = False
            waiters, self._idle = self._idle, None
            for fut in waiters or ():
                if not fut.done():
                    fut.set_result(None)

    def _queue(self) -> deque:
        if self.outq is None:
            self.outq = deque()
        return self.outq

    def _when_idle(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self._idle is None:
            self._idle = []
        self._idle.append(fut)
        return fut

    async def send(self, msg: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Send a message (or a list of them, written together) from this connection's own loop:
        written now when the socket is idle; otherwise queued behind the write in progress
        (waiting while the queue is full)."""
        while self.state is not State.CLOSING:
            if not self.sending:
                self.sending = True
                await self._pump(msg)
                return
            queue = self._queue()
            if len(queue) < self.limits.write_queue:
                queue.append(msg)
                return
            await self._when_idle()

    def saw(self, messages: list[dict[str, Any]]) -> None:
        """This socket got (or will get) `messages`: later patches are numbered above them even if
        the store forgot the session meanwhile (retention, the embedded store's caps)."""
        if messages:
            last = messages[-1].get("pseq", 0)
            if last > self.pseq_floor:
                self.pseq_floor = last

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        """Queue messages from elsewhere (beacon, bus); a consumer this far behind is closed."""
        if self.early is not None:
            self.early.extend(messages)
            return
        self.saw(messages)
        for msg in messages:
            if self.state is State.CLOSING:
                return
            queue = self._queue()
            if len(queue) >= self.limits.write_queue:
                log.warning("session %s: write queue full, closing", self.sid)
                self.state = State.CLOSING
                self.outq = None
                if self.flusher is not None:
                    self.flusher.cancel()
                asyncio.get_running_loop().create_task(self._force_close(P.CLOSE_INTERNAL_ERROR, "internal error"))
                return
            queue.append(msg)
        if not self.sending and self.outq:
            self.sending = True
            self.flusher = asyncio.get_running_loop().create_task(self._pump(self.outq.popleft()))

    async def _force_close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code, reason)
        except (RuntimeError, OSError):
            pass

    async def close(self, code: int, reason: str) -> None:
        """Send everything queued, then the close frame (§7), within 2 s; idempotent."""
        if self.state is State.CLOSING:
            return
        self.state = State.CLOSING
        try:
            if not self.sending:
                self.sending = True
                async with asyncio.timeout(2.0):
                    await self._pump(_Close(code, reason))
                return
            self._queue().append(_Close(code, reason))
            await asyncio.wait_for(self._when_idle(), timeout=2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if self.flusher is not None:
                self.flusher.cancel()
            await self._force_close(code, reason)

    def rate_ok(self) -> bool:
        """Token bucket (limits.rate_per_s, limits.rate_burst)."""
        now = time.monotonic()
        self.tokens = min(self.limits.rate_burst, self.tokens + (now - self.refill_at) * self.limits.rate_per_s)
        self.refill_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def flooding(self) -> bool:
        """A strike per rate-limited message; too many within the window means 4004 (§7)."""
        now = time.monotonic()
        if self.strikes is None:
            self.strikes = deque()
        self.strikes.append(now)
        while self.strikes and now - self.strikes[0] > self.limits.flood_window_s:
            self.strikes.popleft()
        return len(self.strikes) > self.limits.flood_strikes


class Registry:
    """Live connections by visitor, so patches from elsewhere (beacon, a bus) reach the socket."""

    def __init__(self) -> None:
        self.by_visitor: dict[str, set[Connection]] = {}

    def add(self, conn: Connection) -> None:
        self.by_visitor.setdefault(conn.vid, set()).add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.by_visitor.get(conn.vid)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_visitor[conn.vid]

    def sessions(self, vid: str, sid: str) -> list[Connection]:
        return [c for c in self.by_visitor.get(vid, ()) if c.sid == sid]

    def deliver(self, vid: str, sid: str, messages: list[dict[str, Any]]) -> int:
        conns = self.sessions(vid, sid)
        for conn in conns:
            conn.deliver(messages)
        return len(conns)

    def __len__(self) -> int:
        return sum(len(c) for c in self.by_visitor.values())

    async def close_all(self, code: int = P.CLOSE_GOING_AWAY, reason: str = "going away") -> None:
        conns = [c for cs in self.by_visitor.values() for c in cs]
        await asyncio.gather(*(c.close(code, reason) for c in conns), return_exceptions=True)


# ---------------------------------------------------------------------------- the endpoint


class Gateway:
    def __init__(self, settings: Settings, ingest: Ingest, stats: Stats, registry: Registry | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.ingest = ingest
        self.stats = stats
        self.registry = registry or Registry()
        self.shutting_down = False
        self.drain_deadline: float | None = None  # time.monotonic() by which the drain must end
        # Redis mode (docs/SCALING.md): a `redis_bus.RedisBus` for cross-process patches,
        # presence and resume; None in the embedded mode. Set by `create_app`.
        self.bus = None
        # The embedded mode's resume outbox (§2.3); in Redis mode the bus keeps it in Redis.
        self.outbox = LocalOutbox(self.limits.outbox_size, self.limits.outbox_ttl_s, self.limits.outbox_sessions)
        self._process = str(os.getpid()).encode()

    def begin_drain(self, timeout: float | None = None) -> None:
        """First step of a drain: `/readyz` turns red and new upgrades are refused (503)."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + (timeout if timeout is not None else self.limits.drain_timeout_s)
        self.shutting_down = True

    def drain_left(self) -> float:
        """Seconds left of the drain bound (the whole bound before a drain began)."""
        if self.drain_deadline is None:
            return self.limits.drain_timeout_s
        return max(0.0, self.drain_deadline - time.monotonic())

    async def drain(self, timeout: float | None = None) -> None:
        """§7: close every socket with 4010 `draining` (the tracker reconnects at once, jittered,
        and the load balancer sends it to another process). Idempotent."""
        self.begin_drain(timeout)
        if len(self.registry):
            log.info("draining %d connection(s)", len(self.registry))
        try:
            await asyncio.wait_for(self.registry.close_all(P.CLOSE_DRAINING, "draining"), max(self.drain_left(), 0.1))
        except asyncio.TimeoutError:
            log.warning("drain: some sockets did not close within the bound")

    async def shutdown(self) -> None:
        """The server is going away: a drain (kept under this name for ASGI lifespans)."""
        await self.drain()

    async def endpoint(self, ws: StreamProtocol | WebSocket) -> None:
        """The `/v1/stream` WebSocket endpoint (one call per connection): `ws` is our transport's
        socket, or Starlette's under another ASGI server (wrapped here, so the rest has one path)."""
        if not isinstance(ws, StreamProtocol):
            ws = AsgiSocket(ws)
        site = ws.query_params.get("site", "")
        origin = ws.headers.get("origin")
        # §2.1 before accept: unknown site or foreign/missing Origin -> HTTP 403. Browsers send
        # Origin on every upgrade and CORS does not apply to WebSockets, so this check is what
        # refuses cross-site WebSocket hijacking.
        if site not in self.settings.sites:
            return await self._refuse(ws, "unknown_site", f"site {site[:64]!r} is not configured")
        if not self.settings.origin_allowed(site, origin):
            return await self._refuse(ws, "origin_not_allowed", f"origin {str(origin)[:128]!r} is not allowed for site {site!r}")
        if self.shutting_down:
            return await self._refuse(ws, "shutting_down", "server is shutting down", status=503)
        # The process id lets an operator (and the workers test) see which worker took a socket.
        await ws.accept(headers=[(b"x-microadjust-worker", self._process)])
        conn = Connection(ws, site, self.limits)
        try:
            await self._serve(conn)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("connection %s/%s failed", conn.vid, conn.sid)
            await conn.close(P.CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            if conn.state is not State.CLOSING:
                conn.state = State.CLOSING
            if conn.vid and conn in self.registry.by_visitor.get(conn.vid, ()):
                self.registry.remove(conn)
                self.stats.connections -= 1
                metrics.CONNECTIONS.dec()
                if self.bus is not None:
                    await self.bus.leave(conn.vid)
            if conn.flusher is not None and not conn.flusher.done():
                conn.flusher.cancel()

    async def _refuse(self, ws: StreamProtocol | AsgiSocket, code: str, detail: str, status: int = 403) -> None:
        self.stats.reject(code)
        log.info("refused upgrade: %s", detail)
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse({"error": code, "detail": detail}, status_code=status))
        else:
            await ws.close(1008)  # the ASGI server answers a close before accept with HTTP 403

    async def _receive(self, conn: Connection, timeout: float) -> Any:
        """The next frame, decoded; None after a close it already sent. Raises TimeoutError."""
        # Our transport keeps one lazily re-armed timer per socket for this (transport.receive).
        message = await conn.ws.receive(asyncio.get_running_loop().time() + timeout)
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.stats.reject("binary")
            await conn.close(P.CLOSE_UNSUPPORTED_DATA, "binary frames not supported")  # §1
            return None
        # The ASGI server enforces the same bound (ws_max_size); this keeps the limit when it
        # does not, and counts characters first because encoding is only needed near the edge.
        if len(text) > self.limits.max_frame // 4 and len(text.encode("utf-8")) > self.limits.max_frame:
            self.stats.reject("too_large")
            await conn.close(P.CLOSE_TOO_LARGE, "frame too large")
            return None
        return text

    async def _serve(self, conn: Connection) -> None:
        v = conn.ws.query_params.get("v")
        if v is not None and v != str(P.VERSION):
            self.stats.reject("bad_version")
            return await conn.close(P.CLOSE_BAD_VERSION, f"unsupported protocol version {v[:16]}; server speaks {P.VERSION}")
        # §2.2: hello first, within the hello timeout.
        try:
            text = await self._receive(conn, self.limits.hello_timeout_s)
        except asyncio.TimeoutError:
            self.stats.reject("timeout")
            return await conn.close(P.CLOSE_TIMEOUT, "timeout")
        if text is None:
            return
        obj = None
        try:
            obj = P.decode(text)
            t, hello = P.validate_client_message(obj, self.limits.max_batch)
        except P.ProtocolError as exc:
            self.stats.reject("bad_hello")
            said_hello = exc.code == P.BAD_MESSAGE and isinstance(obj, dict) and obj.get("t") == "hello"
            return await conn.close(P.CLOSE_BAD_HELLO, _reason(f"bad hello: {exc.detail}") if said_hello else "expected hello")
        if t != "hello":
            self.stats.reject("bad_hello")
            return await conn.close(P.CLOSE_BAD_HELLO, "expected hello")
        if hello.site != conn.site:
            self.stats.reject("site_mismatch")
            return await conn.close(P.CLOSE_SITE_MISMATCH, "site mismatch")
        conn.vid, conn.sid, conn.consent = hello.vid, hello.sid, hello.consent
        logs.bind(vid=conn.vid, sid=conn.sid)
        # Registered (and, in Redis mode, present) before the state is read: a patch for this
        # session committed from now on reaches `conn.early` (or the resume read, or both; the
        # pseq filter below sends it once), never neither.
        conn.early = []
        self.registry.add(conn)
        self.stats.connections += 1
        self.stats.connections_total += 1
        metrics.CONNECTIONS.inc()
        if self.bus is not None:
            await self.bus.join(conn.vid)
        snap = await self.ingest.store.load(conn.vid, conn.sid)
        welcome: dict[str, Any] = {
            "t": "welcome", "v": P.VERSION, "sid": conn.sid, "ack": snap.ack, "hb": self.limits.heartbeat_ms,
            "limits": {"frame": self.limits.max_frame, "batch": self.limits.max_batch}, "pseq": snap.pseq,
        }
        missed: list[dict[str, Any]] = []
        if hello.pseq < snap.pseq:
            # §2.3 resume: the patches this session missed, from the outbox (in Redis mode the
            # previous socket may have been on another process).
            resume = await self._resume(conn, hello.pseq, snap.pseq)
            missed = resume.messages
            welcome["pseq"] = resume.pseq
            welcome["resume"] = {"from": hello.pseq, "sent": len(missed), "complete": resume.complete}
        elif hello.pseq > snap.pseq:
            # §2.3: the client applied patches the server no longer knows (the session expired or
            # was erased): nothing to send, numbering goes on above what the client has seen.
            conn.pseq_floor = hello.pseq
            welcome["pseq"] = hello.pseq
            welcome["resume"] = {"from": hello.pseq, "sent": 0, "complete": False}
            metrics.RESUMES.labels("incomplete").inc()
            log.info("session %s claims pseq %d, server has %d: numbering on from it", conn.sid, hello.pseq, snap.pseq)
        # Whatever path above: this socket has seen patches up to the welcome's pseq, so later
        # ones are numbered above it even if the store forgets the session meanwhile (§2.3).
        if welcome["pseq"] > conn.pseq_floor:
            conn.pseq_floor = welcome["pseq"]
        await conn.send(welcome)
        for msg in missed:
            await conn.send(msg)
        early, conn.early = conn.early, None
        conn.state = State.OPEN
        sent = welcome["pseq"]
        late = [m for m in early if m.get("pseq", 0) > sent]
        if late:
            conn.deliver(late)
        # This frame lives as long as the socket: drop the hello, the snapshot and the welcome
        # (about 2 KB per idle socket, bench/experiments/conn_memory.py).
        text = obj = hello = snap = welcome = missed = resume = early = late = None
        await self._open(conn)

    async def _resume(self, conn: Connection, last_pseq: int, current: int) -> Resume:
        if self.bus is not None:
            resume = await self.bus.resume(conn.vid, conn.sid, last_pseq, current)
        else:
            resume = self.outbox.resume(conn.vid, conn.sid, last_pseq, current)
        metrics.RESUMES.labels("complete" if resume.complete else "incomplete").inc()
        log.info("session %s resumed from pseq %d: %d missed, complete=%s",
                 conn.sid, last_pseq, len(resume.messages), resume.complete)
        return resume

    async def _open(self, conn: Connection) -> None:
        silence = 3 * self.limits.heartbeat_ms / 1000  # §6
        last_rx = time.monotonic()
        last_tick = last_rx
        tick = self.limits.tick_ms / 1000
        while conn.state is State.OPEN:
            now = time.monotonic()
            wait = last_rx + silence - now
            ticking = tick > 0 and conn.consent == "granted" and _has_timers(self.ingest.rulebook.ruleset)
            if ticking:
                wait = min(wait, last_tick + tick - now)
            try:
                text = await self._receive(conn, max(wait, 0.0))
            except asyncio.TimeoutError:
                now = time.monotonic()
                if now - last_rx >= silence:
                    self.stats.reject("timeout")
                    return await conn.close(P.CLOSE_TIMEOUT, "timeout")
                last_tick = now
                await self._tick(conn)
                continue
            if text is None:
                return
            last_rx = last_tick = time.monotonic()
            # The message is handled in a frame of its own, so that nothing of it (the text, the
            # decoded batch, its events) is still referenced while this socket waits for the
            # next one: see _message.
            if await self._message(conn, text):
                return
            text = None

    async def _message(self, conn: Connection, text: str) -> bool:
        """Handle one frame of an open socket; True when the socket was closed for it.

        Its own frame (not _open's loop body) on purpose: what a message allocates dies when
        this returns, while it is still young to the garbage collector. Kept across the wait for
        the next frame, every socket's last batch (a dozen dicts and lists) survived into the
        collector's older generations, and with 1,000 sockets a young-generation collection
        walked ~20,000 such objects (docs/PERFORMANCE.md, "Garbage collector: what a message
        allocates dies young")."""
        if not conn.rate_ok():
            self.stats.reject(P.RATE_LIMITED)
            if _is_batch(text):
                # A dropped batch leaves a hole below whatever this socket sends next, and acks
                # are cumulative: the next stored batch would ack past it, and the resend would
                # then be dropped as a duplicate. So nothing more is read from this socket; the
                # tracker reconnects and resends from the stored ack, in order (§4, §7).
                await conn.send({"t": "error", "code": P.RATE_LIMITED, "detail": "too many messages; the batch was dropped: reconnect and resend"})
                await conn.close(P.CLOSE_TRY_AGAIN, "rate limited")
                return True
            if conn.flooding():
                await conn.close(P.CLOSE_FLOOD, "flood")
                return True
            await conn.send({"t": "error", "code": P.RATE_LIMITED, "detail": "too many messages; the message was dropped"})
            return False
        try:
            obj = P.decode(text)
            if type(obj) is dict and obj.get("t") == "hello":
                # §2.2: a second hello closes 4002, well formed or not.
                self.stats.reject("bad_hello")
                await conn.close(P.CLOSE_BAD_HELLO, "expected hello")
                return True
            t, body = P.validate_client_message(obj, self.limits.max_batch)
        except P.ProtocolError as exc:
            await self._bad(conn, exc)
            return False
        if t == "events":
            return await self._events(conn, body)
        if t == "applied":
            self.stats.applied(body)
        else:  # ping
            await conn.send({"t": "pong"})
        return False

    async def _bad(self, conn: Connection, exc: P.ProtocolError) -> None:
        self.stats.reject(exc.code)
        conn.bad += 1
        await conn.send({"t": "error", "code": exc.code, "detail": _reason(exc.detail, 512)})
        if conn.bad >= self.limits.bad_message_budget:  # §7: the 10th bad message closes
            await conn.close(P.CLOSE_TOO_MANY_BAD, "too many bad messages")

    async def _events(self, conn: Connection, batch: P.Batch) -> bool:
        """Store a batch and answer it; True when the socket was closed for it."""
        for kind in sorted({k for _, k in batch.unknown}):
            path = next(p for p, k in batch.unknown if k == kind)
            await conn.send({"t": "error", "code": P.UNKNOWN_EVENT, "detail": _reason(f"{path}: unknown event kind {kind!r}; dropped", 512)})
        try:
            result = await self.ingest.batch(conn.vid, conn.sid, conn.consent, batch, conn.pseq_floor, conn.ack_floor)
        except CommitFailed as exc:
            # Not acked, and nothing more is read from this socket: a later batch stored on it
            # would ack past this one (acks are cumulative). The tracker reconnects after a
            # pause and resends from the stored ack (§4); nothing is lost.
            log.warning("batch %d of session %s not stored: %s", batch.seq, conn.sid, exc)
            await conn.send({"t": "error", "code": P.UNAVAILABLE, "detail": "the batch was not stored: reconnect and resend"})
            await conn.close(P.CLOSE_TRY_AGAIN, "not stored")
            return True

        if result.ack > conn.ack_floor:
            conn.ack_floor = result.ack
        ack = {"t": "ack", "seq": result.ack}
        # The ack and the patches the batch brought leave together (one write, one packet).
        await conn.send([ack, *result.messages] if result.messages else ack)
        await self.distribute(conn.vid, conn.sid, result, origin=conn, answered=True)
        return False

    async def _tick(self, conn: Connection) -> None:
        try:
            result = await self.ingest.tick(conn.vid, conn.sid, conn.pseq_floor)
        except CommitFailed:
            return
        if result is not None:
            await self.distribute(conn.vid, conn.sid, result, origin=conn)

    async def distribute(self, vid: str, sid: str, result: IngestResult, origin: Connection | None = None,
                         answered: bool = False) -> None:
        """Deliver a batch's patch/revert messages wherever session `sid` is open, and keep them
        for resume (§2.3). One path for the socket, the idle tick and the beacon (§3.2):

        * the socket whose batch it was gets them in order after its ack (waiting for room in
          its queue; `answered`: they already left with the ack); other sockets of the session
          on this process (a duplicated tab) get them queued;
        * embedded mode: recorded in the local outbox. Redis mode: `bus.publish` records them
          in the outbox in Redis and sends them to the session's sockets on other processes,
          and a changed visitor part nudges the processes holding the visitor's other tabs.
        """
        messages = result.messages
        if messages:
            if origin is not None:
                origin.saw(messages)
                if not answered:
                    await origin.send(messages)
            for conn in self.registry.sessions(vid, sid):
                if conn is not origin:
                    conn.deliver(messages)
            for msg in messages:
                if msg["t"] == "patch":
                    self.stats.patches += 1
                else:
                    self.stats.reverts += 1
                metrics.labelled(metrics.PATCHES, msg["t"]).inc()
            if self.bus is None:
                self.outbox.record(vid, sid, messages)
            else:
                await self.bus.publish(vid, sid, messages)
        if self.bus is not None and result.stored and self.bus.shared(vid):
            await self.bus.nudge(vid)

    async def reevaluate(self, vid: str) -> None:
        """Another process changed this visitor's shared profile part (a bus nudge): re-check
        this process's open tabs of the visitor, so a patch there comes from the engine."""
        self.ingest.store.invalidate_visitor(vid)  # decide on the visitor part the other wrote
        for conn in list(self.registry.by_visitor.get(vid, ())):
            if conn.state is State.OPEN and conn.consent == "granted":
                await self._tick(conn)

    def forget_visitor(self, vid: str) -> None:
        """Erasure: drop the visitor's outboxes kept by this process."""
        self.outbox.forget_visitor(vid)


def _has_timers(ruleset) -> bool:
    """True when some rule can fire without a new event (clock features or a `for` delay)."""
    cached = getattr(ruleset, "_ma_has_timers", None)
    if cached is None:
        cached = bool(getattr(ruleset, "clock_rules", ())) or any(getattr(r, "for_ms", 0) for r in getattr(ruleset, "rules", ()))
        try:
            ruleset._ma_has_timers = cached
        except AttributeError:
            pass
    return cached


def _is_batch(text: str) -> bool:
    """Is this frame an events batch? (For a rate-limited frame, which is otherwise not parsed.)"""
    if '"events"' not in text:
        return False
    try:
        msg = P.decode(text)
    except P.ProtocolError:
        return False
    return type(msg) is dict and msg.get("t") == "events"


def _reason(text: str, limit: int = 120) -> str:
    """A close reason must fit a control frame (123 bytes of UTF-8); error details are capped too."""
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", "ignore")
