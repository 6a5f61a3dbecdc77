"""The `/v1/stream` transport (microadjust/transport.py) against a real server and real clients:
what it does beyond the gateway's own tests (test_gateway.py covers 1003, 1009, 403 refusals)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from microadjust.transport import StreamProtocol

from .helpers import DEMO_RULES, closed_with, connect, hello, hover, ids, make_settings, recv, send, until


@pytest.fixture
def server(live_server, tmp_path):
    return live_server(make_settings(tmp_path, rules_file=DEMO_RULES))


def open_sockets(server) -> list[StreamProtocol]:
    return [c for c in server._server.uvicorn.server_state.connections if isinstance(c, StreamProtocol)]


async def raw_request(server, request: bytes) -> bytes:
    host, port = server.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_upgrade_to_another_path_is_answered_404_with_json(server):
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(server.replace("http://", "ws://") + "/v1/other", origin="http://page.test"):
            pass
    assert caught.value.response.status_code == 404
    body = json.loads(caught.value.response.body)
    assert body == {"error": "not_found", "detail": "no WebSocket endpoint at '/v1/other'"}
    assert caught.value.response.headers["Content-Type"] == "application/json"


async def test_upgrade_without_a_websocket_key_is_answered_400(server):
    data = await raw_request(server, b"GET /v1/stream?site=demo&v=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://page.test\r\n"
                                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data
    assert b"Sec-WebSocket-Key" in body


async def test_fragmented_messages_are_put_together(server):
    vid, sid = ids()
    async with connect(server) as ws:
        text = json.dumps(hello(vid, sid))
        await ws.send([text[:10], text[10:30], text[30:]])  # three frames: TEXT, CONT, CONT(fin)
        assert (await recv(ws))["t"] == "welcome"
        batch = json.dumps({"t": "events", "seq": 1, "events": [hover("p2")]})
        await ws.send([batch[:5], batch[5:]])
        assert await until(ws, "ack") == {"t": "ack", "seq": 1}


async def test_invalid_utf8_in_a_text_frame_closes_1007(server):
    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello(vid, sid))
        await recv(ws)
        await ws.send(b'{"t":"ping","x":"\xff"}', text=True)
        code, _ = await closed_with(ws)
        assert code == 1007


async def test_websocket_pings_are_answered(server):
    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello(vid, sid))
        await recv(ws)
        latency = await asyncio.wait_for(await ws.ping(), 5)
        assert latency >= 0
        await send(ws, {"t": "ping"})
        assert await recv(ws) == {"t": "pong"}


async def test_messages_sent_back_to_back_are_all_read_in_order(server):
    """Reading pauses while a message is unread; nothing is lost or reordered meanwhile."""
    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello(vid, sid))
        await recv(ws)
        for seq in range(1, 31):
            await send(ws, {"t": "events", "seq": seq, "events": [hover(f"p{1 + seq % 8}", phase="end", dur=100)]})
        acks = []
        while len(acks) < 30:
            msg = await recv(ws)
            if msg["t"] == "ack":
                acks.append(msg["seq"])
        assert acks == list(range(1, 31))


async def test_an_open_socket_keeps_neither_the_upgrade_request_nor_a_receive_buffer(server):
    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello(vid, sid))
        await recv(ws)
        await send(ws, {"t": "ping"})
        await recv(ws)
        [sock] = open_sockets(server)
        assert sock.headers is None and sock.inbox is None and sock.accepted
        # websockets' parser generator kept the parsed request (all headers) for the socket's life
        # until transport._forget_request restarted it after the 101; frames still parse (above).
        assert "request" not in sock.conn.parser.gi_frame.f_locals


async def test_a_socket_the_client_closes_is_forgotten(server):
    vid, sid = ids()
    ws = await connect(server)
    await send(ws, hello(vid, sid))
    await recv(ws)
    assert len(open_sockets(server)) == 1
    await ws.close(1001, "going away")
    for _ in range(100):
        if not open_sockets(server):
            break
        await asyncio.sleep(0.02)
    assert open_sockets(server) == []


class _Transport:
    """Just enough of an asyncio transport for StreamProtocol's receive and send paths."""

    def __init__(self) -> None:
        self.paused = False
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


def _protocol() -> StreamProtocol:
    from types import SimpleNamespace

    proto = StreamProtocol(SimpleNamespace(ws_max_size=65536), SimpleNamespace(connections=set(), tasks=set()))
    proto.connection_made(_Transport())
    return proto


async def test_receive_times_out_at_its_deadline_and_keeps_a_later_message():
    proto = _protocol()
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await proto.receive(loop.time() + 0.05)
    proto._push({"type": "websocket.receive", "text": "late"})
    assert proto.transport.paused  # nobody was waiting: reading stops until it is taken
    assert await proto.receive(loop.time() + 0.05) == {"type": "websocket.receive", "text": "late"}
    assert not proto.transport.paused and proto.inbox is None


async def test_a_moved_deadline_is_honoured_by_the_one_timer():
    proto = _protocol()
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(proto.receive(loop.time() + 0.05))
    await asyncio.sleep(0.01)
    proto._push({"type": "websocket.receive", "text": "a"})  # handed to the waiting reader
    assert (await first)["text"] == "a" and not proto.transport.paused
    start = loop.time()
    with pytest.raises(TimeoutError):
        await proto.receive(start + 0.2)  # the timer armed for the first wait fires early, re-arms
    assert loop.time() - start >= 0.19
    assert proto.timer is None


async def test_a_receive_timeout_leaves_no_cycle_for_the_collector():
    # An idle socket times out once per tick: each timeout used to leave its future, error,
    # traceback and frames in a reference cycle (~1 KB per idle socket until a collection).
    import gc

    proto = _protocol()
    loop = asyncio.get_running_loop()
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            try:
                await proto.receive(loop.time() + 0.001)
            except TimeoutError:
                pass
        garbage = gc.collect()
    finally:
        gc.enable()
    # Before: 20 timeouts left 95 objects in cycles (~5 each); anything the loop itself leaves is
    # far below one per timeout.
    assert garbage < 20, garbage


@pytest.mark.parametrize("size", [0, 125, 126, 300, 65535, 65536, 70000])
async def test_text_frames_are_written_as_websockets_would(size):
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State

    proto = _protocol()
    proto.conn.state = State.OPEN
    text = "é" * (size // 2) + "x" * (size % 2)
    await proto.send_payloads([text.encode()])
    assert bytes(proto.transport.written) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def _masked(payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    from websockets.frames import apply_mask

    n = len(payload)
    head = bytes((0x80 * fin | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


async def _raw_session(server):
    """A raw socket past the upgrade and the hello: (reader, writer, welcome frame bytes)."""
    import base64
    import os

    host, port = server.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET /v1/stream?site=demo&v=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://page.test\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    vid, sid = ids()
    writer.write(_masked(json.dumps(hello(vid, sid)).encode()))
    return reader, writer


async def _read_frame(reader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def test_frames_split_anyhow_across_packets_are_read_in_order(server):
    reader, writer = await _raw_session(server)
    assert json.loads((await _read_frame(reader))[1])["t"] == "welcome"
    frames = b"".join(_masked(json.dumps({"t": "events", "seq": seq, "events": [hover("p1", phase="end", dur=100)]})
                              .encode()) for seq in range(1, 9))
    frames += _masked(json.dumps({"t": "ping", "pad": "x" * 300}).encode())  # 16-bit length
    for cut in (1, 3, 7, 50, 130, len(frames)):  # a byte at a time, then bigger pieces
        chunk, frames = frames[:cut], frames[cut:]
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(frames)
    seen = []
    while len(seen) < 9:
        _, data = await _read_frame(reader)
        msg = json.loads(data)
        seen.append(msg.get("seq", msg["t"]) if msg["t"] in ("ack", "error") else msg["t"])
    assert seen[:8] == list(range(1, 9)) and seen[8] in ("pong", "error")
    writer.close()


async def test_a_ping_between_text_frames_is_answered_by_websockets(server):
    reader, writer = await _raw_session(server)
    await _read_frame(reader)
    writer.write(_masked(b"hi", opcode=0x9) + _masked(b'{"t":"ping"}'))
    replies = [await _read_frame(reader), await _read_frame(reader)]
    assert (0xA, b"hi") in replies and (0x1, b'{"t":"pong"}') in replies
    writer.close()


async def test_an_unmasked_client_frame_closes_1002(server):
    reader, writer = await _raw_session(server)
    await _read_frame(reader)
    writer.write(b"\x81\x0c" + b'{"t":"ping"}')
    opcode, data = await _read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(data[:2], "big") == 1002
    writer.close()


async def test_a_frame_announcing_more_than_the_limit_closes_1009_from_its_header(server):
    reader, writer = await _raw_session(server)
    await _read_frame(reader)
    writer.write(b"\x81\xff" + (10 ** 9).to_bytes(8, "big") + b"\x00\x00\x00\x00")  # no payload sent
    opcode, data = await _read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(data[:2], "big") == 1009 and data[2:] == b"frame too large"
    writer.close()


async def test_a_closed_socket_leaves_nothing_for_the_collector(server):
    # websockets' parser is a generator whose frame refers to its ServerProtocol: left alone,
    # every closed socket left a cycle of a dozen objects that only a full collection freed.
    import gc
    import weakref

    vid, sid = ids()
    gc.collect()
    gc.disable()
    try:
        async with connect(server) as ws:
            await send(ws, hello(vid, sid))
            assert (await recv(ws))["t"] == "welcome"
            [proto] = [p for p in open_sockets(server) if p.accepted]
            parser = weakref.ref(proto.conn)
            del proto
        deadline = asyncio.get_running_loop().time() + 5
        while parser() is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert parser() is None, "the closed socket's ServerProtocol waits for the collector"
    finally:
        gc.enable()


async def test_a_waiting_socket_keeps_nothing_of_its_last_message(server):
    # What a message allocates dies when it has been handled, young: kept by the reader's frame
    # while it waited for the next one, every socket's last batch (a dozen dicts and lists)
    # aged into the collector's older generations (docs/PERFORMANCE.md, "Garbage collector").
    import gc

    from microadjust.protocol import Batch

    def batches() -> list:
        return [o for o in gc.get_objects() if type(o) is Batch and any(e.get("item") == "p_gcprobe" for e in o.events)]

    vid, sid = ids()
    async with connect(server) as ws:
        await send(ws, hello(vid, sid))
        assert (await recv(ws))["t"] == "welcome"
        await send(ws, {"t": "events", "seq": 1, "events": [hover("p_gcprobe"), hover("p_gcprobe", phase="end")]})
        assert (await until(ws, "ack"))["seq"] == 2
        await asyncio.sleep(0.05)
        assert batches() == []


async def test_a_ping_flood_that_never_reads_its_pongs_cannot_grow_the_servers_memory(server):
    """While the peer does not read what is written, nothing more is read from it: the pongs its
    pings ask for stay within the transport's high-water mark instead of piling up."""
    import socket

    reader, writer = await _raw_session(server)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and this side never reads
    pings = _masked(b"x" * 125, opcode=0x9) * 200  # 26 KB of pings, 25 KB of pongs to answer
    sent, deadline = 0, asyncio.get_running_loop().time() + 3
    while sent < 40_000_000 and asyncio.get_running_loop().time() < deadline:
        writer.write(pings)
        try:
            await asyncio.wait_for(writer.drain(), 0.2)
        except asyncio.TimeoutError:
            break  # the server stopped reading: TCP pushes back on us, as it should
        sent += len(pings)
    await asyncio.sleep(0.3)
    (proto,) = [p for p in open_sockets(server) if not p.disconnected]
    buffered = proto.transport.get_write_buffer_size()
    assert buffered < 1_000_000, f"{buffered} bytes of pongs buffered after {sent} bytes of pings"
    assert sent < 40_000_000, "the server kept reading a peer that reads nothing"
    writer.transport.abort()
