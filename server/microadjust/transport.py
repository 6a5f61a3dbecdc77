"""The `/v1/stream` transport: WebSocket frames straight to the gateway, no ASGI in between.

uvicorn serves the HTTP routes (Starlette) and hands every WebSocket upgrade to the protocol
class given as `ws=`. With its own `websockets-sansio` class each socket carries an ASGI scope,
a receive queue (three deques), three events, the parsed handshake request and response, and
every frame passes the ASGI message dicts and Starlette's middleware and `WebSocket` wrappers on
its way in and out. `StreamProtocol` is that class for this one endpoint, written for what the
gateway needs and nothing more: websockets' sans-I/O `ServerProtocol` parses the handshake and
every frame but whole text frames, which `data_received` unmasks itself (the same limits, codes
and close handshake as before); text frames out are framed here. It is itself the `ws` object
the gateway's `endpoint` talks to (`query_params`, `headers`, `accept`, `send_denial_response`,
`receive(deadline)`, `send_payloads`, `close`; `AsgiSocket` gives Starlette's `WebSocket` the
same calls under another ASGI server). What it bought is in
docs/PERFORMANCE.md ("Transport, event loop, validation and engine").

Behaviour kept from uvicorn's class: an unread message pauses reading (backpressure: a client
cannot pile frames into the server's memory faster than the gateway reads them); a close frame
from the peer is answered and ends the socket; after our close frame the socket stays open up to
`CLOSE_TIMEOUT_S` for the peer's answer (then it is aborted). Beyond it: a peer that does not
read what is written is not read either (pongs to a ping flood cannot pile up). A frame over
`ws_max_size` closes 1009, invalid UTF-8 1007; on server shutdown an open socket is closed 1012 (the drain closed them with 4010 before).
A WebSocket upgrade to any other path is answered 404 with a JSON body.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.websockets import WebSocketDisconnect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import apply_mask  # websockets' C speedup when built, else pure Python
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

log = logging.getLogger("microadjust.transport")
_ws_log = logging.getLogger("microadjust.transport.frames")  # websockets' own debug output
# websockets says "connection open" at INFO for every socket, next to our own "[accepted]" line;
# only its warnings are worth a line by default (set this logger's level to DEBUG for frames).
_ws_log.setLevel(logging.WARNING)

PATH = "/v1/stream"
CLOSE_TIMEOUT_S = 10.0  # as uvicorn: how long a closed socket waits for the peer's close frame
_SCOPE = {"type": "websocket", "extensions": {"websocket.http.response": {}}}


class StreamProtocol(asyncio.Protocol):
    """One upgraded socket (uvicorn instantiates it per upgrade, see `protocol_class`)."""

    gateway: Any = None  # set on the subclass protocol_class() makes
    scope = _SCOPE  # what the gateway checks before answering a refusal with an HTTP response

    __slots__ = (
        "loop", "connections", "tasks", "max_size", "transport", "conn", "query_params", "headers",
        "inbox", "waiter", "read_paused", "write_waiter", "accepted", "close_sent", "disconnected",
        "close_timer", "_frames", "_binary", "_pending_response", "deadline", "timer", "fast", "pending",
    )

    def __init__(self, config, server_state, app_state=None, _loop=None) -> None:
        self.loop = _loop or asyncio.get_event_loop()
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.max_size = config.ws_max_size
        self.transport: asyncio.Transport | None = None
        self.conn = ServerProtocol(max_size=config.ws_max_size, logger=_ws_log)
        self.query_params: dict[str, str] = {}
        self.headers: Headers | None = None  # the upgrade's headers, until accept() or a refusal
        self.inbox: list | None = None  # received messages the gateway has not read yet
        self.waiter: asyncio.Future | None = None  # the gateway waiting in receive()
        self.read_paused = False
        self.write_waiter: asyncio.Future | None = None  # a send waiting for the buffer to drain
        self.accepted = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        self._frames: list[bytes] | None = None  # a fragmented message being put together
        self._binary = False
        self._pending_response: Response | None = None  # the 101, from the handshake to accept()
        self.fast = False  # data_received's own frame parsing (from accept() on)
        self.pending: bytes | None = None  # the start of a frame not fully received yet
        self.deadline = 0.0  # receive(deadline=...): when the current wait times out (loop time)
        self.timer: asyncio.TimerHandle | None = None  # fires at or before `deadline`

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.connections.add(self)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if not self.disconnected:
            self.disconnected = True
            self._push({"type": "websocket.disconnect", "code": 1005 if self.accepted else 1006})
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # asyncio never resumes writing on a transport lost while paused: wake the writer here.
        waiter, self.write_waiter = self.write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # websockets' parser is a generator whose frame refers to its ServerProtocol: a cycle
        # that only a full collection would free (a dozen objects per closed socket). No byte
        # comes after this, so the parser is closed and the socket's objects go at once.
        self.conn.parser.close()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self.write_waiter is None:
            self.write_waiter = self.loop.create_future()
            # Backpressure both ways: while the peer does not read what is written, nothing more
            # is read from it. Otherwise what its frames make us write (a pong per ping, answers)
            # would pile up in the write buffer without bound (a ping flood that never reads).
            if not self.disconnected:
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        waiter, self.write_waiter = self.write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._read_on()

    def _read_on(self) -> None:
        """Resume reading unless a reason to pause it remains: a received message is unread
        (`read_paused`) or the peer does not read what is written (`write_waiter`).
        (pause_reading and resume_reading are idempotent, so their callers need not track it.)"""
        if not self.read_paused and self.write_waiter is None and not self.disconnected \
                and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        """Frames in. Once the socket is open, a whole unfragmented masked text frame (what a
        tracker sends) is unmasked and decoded here; websockets' parser (a generator per frame,
        ~40% of the inbound cost) gets every other frame, whole, so that it is always between
        frames when it is handed one: pings, close frames, binary and fragmented messages, and
        anything malformed keep its handling, codes and reasons. Its reader is idle (empty) in
        between. A frame that has not fully arrived waits in `pending` (at most the frame limit:
        a header announcing more goes to websockets, which closes 1009)."""
        if not self.fast:
            return self._parse(data)
        if self.pending is not None:
            data, self.pending = self.pending + data, None
        n = len(data)
        pos = 0
        max_size = self.max_size
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), pos + 10
            if not b1 & 0x80:
                # Unmasked (1002): websockets says so from the header.
                self.fast = False
                return self._parse(data[pos:])
            if max_size is not None and length > max_size:
                # Over the limit: 1009 with PROTOCOL §7's reason, from the header alone.
                self.fast = False
                self.conn.fail(1009, "frame too large")
                self._flush()
                self._closed_by_parser()
                return
            end = head + 4 + length
            if end > n:
                break
            if b0 == 0x81 and self._frames is None:  # FIN, no RSV bits, text
                payload = apply_mask(data[head + 4:end], data[head:head + 4])
                pos = end
                if self.close_sent:
                    continue  # past our close frame: read on only for the peer's answer
                if not self._text(payload):
                    return
            else:
                self._parse(data[pos:end])
                pos = end
                if self.disconnected or self.transport.is_closing():
                    return
        if pos < n:
            self.pending = data[pos:]

    def _parse(self, data: bytes) -> None:
        """websockets' sans-I/O parser: the handshake, and the frames the fast path leaves to it."""
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events_received():
            if type(event) is Frame:
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        if conn.parser_exc is not None:
            # Oversized frame (1009), protocol error (1002): websockets queued the close frame.
            self._flush()
            self._closed_by_parser()
            return
        if conn.writes:  # pongs, the answer to a close frame
            self._flush()
            if conn.close_rcvd is not None and not self.close_sent:
                self.transport.close()  # the peer closed first: our answer is written, done

    def shutdown(self) -> None:
        """uvicorn is stopping (after the drain): close what is still open with 1012."""
        if self.close_sent or self.disconnected:
            self.transport.close()
            return
        if self.accepted:
            self._push({"type": "websocket.disconnect", "code": 1012})
            try:
                self.conn.send_close(1012)
                self._flush()
            except InvalidState:
                pass
        else:
            self._respond(500, {"error": "shutting_down", "detail": "server is shutting down"})
        self.transport.close()

    # ------------------------------------------------------------------ inbound

    def _handshake(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:  # not a valid upgrade (websockets says why, in text)
            self._send_response(response)
            return
        path, _, query = request.path.partition("?")
        if path != PATH:
            self._respond(404, {"error": "not_found", "detail": f"no WebSocket endpoint at {path[:128]!r}"})
            return
        self.query_params = dict(parse_qsl(query))
        self.headers = request.headers
        self._pending_response = response
        task = self.loop.create_task(self._run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self) -> None:
        try:
            await self.gateway.endpoint(self)
        except Exception:
            log.exception("WebSocket endpoint failed")
            if not self.accepted and not self.close_sent:
                self._respond(500, {"error": "internal_error", "detail": "internal error"})
        if self.close_timer is None and not self.disconnected:
            self.transport.close()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._binary = opcode is Opcode.BINARY
            if not frame.fin:
                self._frames = [frame.data]
                return
            data = frame.data
        elif opcode is Opcode.CONT:
            if self._frames is None:
                return  # websockets rejects a stray continuation before we see one
            self._frames.append(frame.data)
            if not frame.fin:
                return
            data, self._frames = b"".join(self._frames), None
        elif opcode is Opcode.CLOSE:
            if not self.close_sent and not self.disconnected:
                rcvd = self.conn.close_rcvd
                self.disconnected = True
                self._push({"type": "websocket.disconnect", "code": rcvd.code if rcvd else 1005,
                            "reason": rcvd.reason if rcvd else ""})
            elif self.close_sent:
                self.transport.close()  # the peer answered our close: handshake complete
            return
        else:
            return  # ping (websockets queued the pong) and pong
        if self.close_sent:
            return  # past our close frame: read on only for the peer's answer
        if self._binary:
            self._push({"type": "websocket.receive", "bytes": bytes(data)})
            return
        self._text(data)

    def _text(self, payload) -> bool:
        """A text message in; invalid UTF-8 closes 1007 (False)."""
        try:
            text = bytes(payload).decode()
        except UnicodeDecodeError:
            self.conn.fail(1007, "invalid UTF-8")
            self._flush()
            self._closed_by_parser()
            return False
        self._push({"type": "websocket.receive", "text": text})
        return True

    def _push(self, message: dict) -> None:
        if self.inbox is None:
            self.inbox = [message]  # a list made per message: an idle socket holds none
        else:
            self.inbox.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # taken at once: no need to stop reading
        elif message["type"] == "websocket.receive" and not self.read_paused and not self.disconnected:
            # Backpressure: a message nobody waits for stops reading until it is taken (at most
            # two are ever held: one handed to a waiting reader, one waiting for it). uvicorn
            # pauses on every message; pausing only here saves two epoll_ctl calls per message.
            self.read_paused = True
            self.transport.pause_reading()

    def _closed_by_parser(self) -> None:
        sent = self.conn.close_sent
        self.close_sent = True
        if not self.disconnected:
            self.disconnected = True
            self._push({"type": "websocket.disconnect", "code": sent.code if sent else 1006,
                        "reason": sent.reason if sent else ""})
        self.transport.close()

    # ------------------------------------------------------------------ what the gateway calls

    async def accept(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        response, self._pending_response = self._pending_response, None
        self.headers = None  # read before accept; ~3 KB per socket if kept
        for name, value in headers or ():
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        if self.disconnected or self.transport.is_closing():
            raise WebSocketDisconnect(1006)
        self.accepted = True
        self._send_response(response, close=False)
        _forget_request(self.conn)
        # Frames are parsed here from now on, unless websockets' parser holds bytes of the
        # client's (it keeps the socket then). Under `microadjust serve` it holds none: uvicorn's
        # httptools protocol hands over the upgrade without bytes that came after the request
        # (a client may not send frames before the 101, RFC 6455 §4.1; browsers never do), so
        # such bytes are lost and the socket times out waiting for its hello (4008).
        self.fast = not self.conn.reader.buffer
        log.info('%s - "WebSocket %s" [accepted]', _peer(self.transport), PATH)

    async def send_denial_response(self, response) -> None:
        """A refusal before accept (§2.1): the gateway's JSONResponse as the HTTP answer."""
        self.headers = None
        self._pending_response = None
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers)
        self._send_response(_response(response.status_code, headers, bytes(response.body)))

    async def receive(self, deadline: float | None = None) -> dict:
        """The next message (ASGI-style dict, as Starlette's `receive`). With `deadline` (loop
        time), raises TimeoutError if none has come by then; a message that arrives later is
        kept for the next call.

        The gateway waits with a deadline on every frame. `asyncio.timeout` would make and
        cancel a timer per frame; here one timer per socket is armed when a wait needs it and,
        when it fires early (the deadline moved on meanwhile), re-armed for the new deadline:
        about one timer per heartbeat or tick period instead of one per frame."""
        inbox = self.inbox
        while not inbox:
            if self.disconnected:
                return {"type": "websocket.disconnect", "code": 1006}
            waiter = self.waiter = self.loop.create_future()
            if deadline is not None:
                self.deadline = deadline
                if self.timer is None or self.timer.when() > deadline:
                    if self.timer is not None:
                        self.timer.cancel()
                    self.timer = self.loop.call_at(deadline, self._expire)
            try:
                await waiter
            finally:
                # The local too: a TimeoutError's traceback keeps this frame, and the frame would
                # keep the future that holds the error, a cycle only the collector frees (one per
                # idle socket per tick).
                self.waiter = waiter = None
            inbox = self.inbox
        message = inbox.pop(0)
        if not inbox:
            self.inbox = None
        if self.read_paused and not inbox:
            self.read_paused = False
            self._read_on()
        return message

    def _expire(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms a timer again
        if self.loop.time() >= self.deadline:
            waiter.set_exception(TimeoutError())
        else:
            self.timer = self.loop.call_at(self.deadline, self._expire)

    async def send_payloads(self, payloads: list[bytes]) -> None:
        """Text messages given as UTF-8 bytes, in one write (an ack and the patches it brought
        leave in one packet, one system call)."""
        while self.write_waiter is not None and not self.disconnected:
            await self.write_waiter
        if self.disconnected:
            raise WebSocketDisconnect(1006)
        if self.close_sent:
            raise RuntimeError('Cannot call "send" once a close message has been sent.')
        if self.conn.state is not State.OPEN:  # the peer's close frame came in meanwhile
            raise WebSocketDisconnect(1006)
        if not self.transport.is_closing():
            self.transport.write(_text_frame(payloads[0]) if len(payloads) == 1
                                 else b"".join([_text_frame(p) for p in payloads]))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if not self.accepted:  # before accept: a plain 403, as ASGI servers answer a close
            self._respond(403, {"error": "forbidden", "detail": "connection refused"})
            return
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.close_sent = True
        self._push({"type": "websocket.disconnect", "code": code, "reason": reason or ""})
        try:
            self.conn.send_close(code, reason or "")
        except InvalidState:
            pass
        self._flush()
        if self.read_paused:  # read on, for the peer's close frame (not while it does not read)
            self.read_paused = False
            self._read_on()
        # Aborted, not closed, if the peer never answers: close() would wait for the write
        # buffer to drain first, forever if the peer does not read.
        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, self.transport.abort)

    # ------------------------------------------------------------------ output

    def _flush(self) -> None:
        writes = self.conn.data_to_send()
        if writes and not self.transport.is_closing():
            self.transport.write(writes[0] if len(writes) == 1 else b"".join(writes))

    def _send_response(self, response: Response, close: bool = True) -> None:
        self.conn.send_response(response)
        self._flush()
        if close:
            self.close_sent = True
            self.disconnected = True
            self.transport.close()

    def _respond(self, status: int, body: dict) -> None:
        import orjson

        headers = Headers([("Content-Type", "application/json")])
        self._send_response(_response(status, headers, orjson.dumps(body)))


def _response(status: int, headers: Headers, body: bytes) -> Response:
    headers.setdefault("Date", email.utils.formatdate(usegmt=True))
    headers.setdefault("Connection", "close")
    headers.setdefault("Content-Length", str(len(body)))
    headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return Response(status, phrase, headers, body)


def _text_frame(payload: bytes) -> bytes:
    """A server's text frame (RFC 6455 §5.2): unmasked, FIN + text, the length in 7, 16 or 64
    bits, the payload; written here rather than through websockets' Frame objects."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _forget_request(conn: ServerProtocol) -> None:
    """Restart websockets' frame parser once the handshake is over.

    `ServerProtocol.parse` is one generator for the socket's whole life: it parses the request,
    then `yield from`s the frame parser, so its frame keeps the parsed request (every header,
    ~2.6 KB per socket) until the socket closes. Right after the 101 the frame parser holds no
    state of its own (it waits for the first byte of a frame in the shared reader), so a fresh
    one is equivalent; with bytes already buffered (a client that did not wait for the 101)
    the old one is kept.
    """
    if conn.reader.buffer or conn.state is not State.OPEN:
        return
    parser = Protocol.parse(conn)
    next(parser)
    conn.parser = parser


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"


class AsgiSocket:
    """Starlette's `WebSocket` (under another ASGI server, or Starlette's test client) with the
    calls the gateway makes on a `StreamProtocol`, so the gateway has one path for both."""

    __slots__ = ("ws",)

    def __init__(self, ws) -> None:
        self.ws = ws

    @property
    def query_params(self):
        return self.ws.query_params

    @property
    def headers(self):
        return self.ws.headers

    @property
    def scope(self):
        return self.ws.scope

    async def accept(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await self.ws.accept(headers=headers)

    async def send_denial_response(self, response) -> None:
        await self.ws.send_denial_response(response)

    async def receive(self, deadline: float | None = None) -> dict:
        if deadline is None:
            return await self.ws.receive()
        # asyncio.timeout_at, not wait_for: on Python 3.11 wait_for wraps every receive in a task.
        async with asyncio.timeout_at(deadline):
            return await self.ws.receive()

    async def send_payloads(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            await self.ws.send_text(payload.decode())

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.ws.close(code, reason)


def protocol_class(gateway) -> type[StreamProtocol]:
    """The class to pass to uvicorn as `ws=`, bound to the app's gateway."""
    return type("StreamProtocol", (StreamProtocol,), {"gateway": gateway, "__slots__": ()})
