"""A connection's output (`gateway.Connection`): written in the caller's task when the socket is
idle, queued (bounded, in order) behind a write in progress, and the close frame always last."""

from __future__ import annotations

import asyncio

from microadjust import gateway
from microadjust.gateway import Connection, State
from microadjust.settings import Limits


class FakeSocket:
    """Records what is written; `hold()` makes the next writes wait until `release()`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: list[tuple[int, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.tasks: list[asyncio.Task | None] = []

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def send_text(self, text: str) -> None:
        self.tasks.append(asyncio.current_task())
        await self.gate.wait()
        self.sent.append(text)

    async def send_payloads(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            await self.send_text(payload.decode())

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def conn_with(write_queue: int = 256) -> tuple[Connection, FakeSocket]:
    ws = FakeSocket()
    conn = Connection(ws, "demo", Limits(write_queue=write_queue))
    conn.state = State.OPEN
    return conn, ws


def texts(ws: FakeSocket) -> list[str]:
    return [t.split('"n":')[1].rstrip("}") if '"n":' in t else t for t in ws.sent]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_socket_is_written_in_the_callers_task_without_a_queue_or_a_task():
    conn, ws = conn_with()
    await conn.send({"t": "ack", "n": 1})
    assert texts(ws) == ["1"]
    assert ws.tasks == [asyncio.current_task()]
    assert conn.outq is None and conn.flusher is None and not conn.sending


async def test_messages_arriving_during_a_write_follow_it_in_order():
    conn, ws = conn_with()
    ws.hold()
    first = asyncio.create_task(conn.send({"t": "ack", "n": 1}))
    await settle()
    conn.deliver([{"t": "patch", "n": 2}, {"t": "patch", "n": 3}])  # from the bus, say
    own = asyncio.create_task(conn.send({"t": "patch", "n": 4}))
    await settle()
    assert own.done() and ws.sent == []  # queued, not waiting: the write in progress sends it
    ws.release()
    await first
    assert texts(ws) == ["1", "2", "3", "4"]
    assert conn.flusher is None  # the reader's own write drained the queue


async def test_a_delivery_to_an_idle_socket_is_written_by_a_task_of_its_own():
    conn, ws = conn_with()
    conn.deliver([{"t": "patch", "n": 1}, {"t": "patch", "n": 2}])
    assert conn.flusher is not None
    await conn.flusher
    assert texts(ws) == ["1", "2"] and not conn.sending


async def test_the_close_frame_goes_after_everything_queued_before_it():
    conn, ws = conn_with()
    ws.hold()
    conn.deliver([{"t": "patch", "n": 1}, {"t": "patch", "n": 2}])
    closing = asyncio.create_task(conn.close(4010, "draining"))
    await settle()
    assert ws.closed == []
    conn.deliver([{"t": "patch", "n": 3}])  # after the close began: dropped
    ws.release()
    await closing
    assert texts(ws) == ["1", "2"] and ws.closed == [(4010, "draining")]


async def test_a_consumer_too_far_behind_is_closed_1011_and_nothing_is_queued_past_the_bound():
    conn, ws = conn_with(write_queue=3)
    ws.hold()
    conn.deliver([{"t": "patch", "n": 0}])  # being written (held)
    conn.deliver([{"t": "patch", "n": i} for i in range(1, 4)])  # fills the queue
    assert conn.state is State.OPEN
    conn.deliver([{"t": "patch", "n": 4}])
    assert conn.state is State.CLOSING and conn.outq is None
    await settle()
    assert ws.closed == [(1011, "internal error")]


async def test_the_own_loop_waits_for_room_instead_of_dropping_a_message():
    conn, ws = conn_with(write_queue=2)
    ws.hold()
    conn.deliver([{"t": "patch", "n": 1}])  # being written (held)
    conn.deliver([{"t": "patch", "n": 2}, {"t": "patch", "n": 3}])
    own = asyncio.create_task(conn.send({"t": "ack", "n": 4}))
    await settle()
    assert not own.done()  # two queued behind the write in progress: full
    ws.release()
    await own
    await settle()
    assert texts(ws) == ["1", "2", "3", "4"]


async def test_a_close_that_cannot_be_written_in_time_is_forced(monkeypatch):
    conn, ws = conn_with()
    ws.hold()
    conn.deliver([{"t": "patch", "n": 1}])
    real_wait_for = asyncio.wait_for
    monkeypatch.setattr(gateway.asyncio, "wait_for", lambda aw, timeout: real_wait_for(aw, 0.05))
    await conn.close(1001, "going away")
    await settle()
    assert ws.closed == [(1001, "going away")] and conn.flusher.cancelled()


async def test_a_list_is_written_in_order_behind_what_is_queued():
    conn, ws = conn_with()
    ws.hold()
    first = asyncio.ensure_future(conn.send({"t": "ack", "n": 1}))
    await settle()
    await conn.send([{"t": "ack", "n": 2}, {"t": "patch", "n": 3}])  # queued as one entry
    ws.release()
    await first
    await settle()
    assert texts(ws) == ["1", "2", "3"]


async def test_on_our_transport_an_ack_and_its_patches_leave_in_one_write():
    from .test_transport import _protocol  # the fake transport of the transport tests
    from websockets.protocol import State as WsState

    proto = _protocol()
    proto.conn.state = WsState.OPEN
    writes: list[bytes] = []
    proto.transport.write = writes.append
    conn = Connection(proto, "demo", Limits())
    conn.state = State.OPEN
    await conn.send([{"t": "ack", "seq": 3}, {"t": "patch", "pseq": 1, "patch": {"id": "é/x"}}])
    assert len(writes) == 1
    ack, patch = b'{"t":"ack","seq":3}', '{"t":"patch","pseq":1,"patch":{"id":"é/x"}}'.encode()
    assert writes[0] == bytes((0x81, len(ack))) + ack + bytes((0x81, len(patch))) + patch
