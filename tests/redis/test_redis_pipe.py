"""The auto-pipelined connection (`redis_pipe.AutoPipeline`) against a real redis-server.

It carries every batch's load and commit on a single Redis, so its failure behaviour must be the
one the store's degraded mode is built on: errors of redis-py's types, every command in flight
failed when the connection goes, a fresh connection for the next command.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from microadjust.redis_pipe import AutoPipeline
from microadjust.store.redis import RedisStore, connect


VID = "v_pipeline01"


def events(first_seq: int, n: int) -> list[dict]:
    return [{"k": "click", "ts": 1_700_000_000_000 + i, "seq": first_seq + i, "item": "p1"}
            for i in range(n)]


async def test_commands_issued_in_one_loop_turn_share_one_write(redis_server):
    pipe = AutoPipeline(port=redis_server.port)
    replies = await asyncio.gather(*(pipe.execute("INCR", "ctr") for _ in range(200)))
    assert sorted(replies) == list(range(1, 201))  # every reply reached its own caller
    assert pipe.commands == 200
    assert pipe.writes <= 3, pipe.writes  # one write per loop turn, not one per command
    # Replies come back in order: a GET after a SET in the same turn sees it.
    _, got = await asyncio.gather(pipe.execute("SET", "k", "é"), pipe.execute("GET", "k"))
    assert got == "é"
    await pipe.close()


async def test_errors_use_redis_py_types_and_do_not_break_the_connection(redis_server):
    pipe = AutoPipeline(port=redis_server.port)
    await pipe.execute("SET", "s", "text")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await pipe.execute("LPUSH", "s", "x")
    assert await pipe.execute("GET", "s") == "text"
    await pipe.close()


async def test_a_script_is_loaded_on_noscript_then_run_by_sha(redis_server):
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    pipe = AutoPipeline.for_client(client, timeout=1.0)
    assert await client.script_exists(script.sha) == [False]
    assert await pipe.eval_script(script, ["a"], [7]) == ["a", "7"]
    assert await client.script_exists(script.sha) == [True]  # EVAL cached it
    assert await pipe.eval_script(script, ["b"], [8]) == ["b", "8"]
    await pipe.close()
    await client.aclose()


async def test_db_and_password_from_the_url_are_applied(redis_server):
    server = redis_server
    try:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        await client.config_set("requirepass", "s3cret")
        await client.aclose()
        store_client = connect(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        pipe = AutoPipeline.for_client(store_client, timeout=1.0)
        assert (pipe.db, pipe.password) == (3, "s3cret")
        await pipe.execute("SET", "where", "db3")
        assert await store_client.get("where") == "db3"  # redis-py on the same db sees it
        wrong = AutoPipeline(port=server.port, password="nope")
        for _ in range(2):  # every attempt authenticates again; none runs unauthenticated
            with pytest.raises(RedisConnectionError, match="set-up"):
                await wrong.execute("PING")
            assert wrong._proto is None
        await pipe.close()
        await wrong.close()
        await store_client.aclose()
    finally:
        server.stop()


async def test_a_killed_server_fails_what_is_in_flight_and_the_next_command_reconnects(redis_server):
    server = redis_server
    pipe = AutoPipeline(port=server.port, timeout=0.5)
    try:
        assert await pipe.execute("PING") == "PONG"
        # A command that blocks server-side is in flight when the server dies.
        blocked = asyncio.ensure_future(pipe.execute("BLPOP", "nothing", 0.4))
        await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(RedisConnectionError):
            await blocked
        with pytest.raises(RedisConnectionError):
            await pipe.execute("PING")  # nobody listens: a clear connection error
        server.start()
        assert await pipe.execute("PING") == "PONG"
    finally:
        await pipe.close()
        server.stop()


async def test_a_silent_server_times_out_and_the_connection_is_replaced():
    # A listener that accepts and never answers (a hung Redis).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    pipe = AutoPipeline(port=port, timeout=0.2)
    try:
        results = await asyncio.gather(pipe.execute("PING"), pipe.execute("PING"), return_exceptions=True)
        assert all(isinstance(r, (RedisTimeoutError, RedisConnectionError)) for r in results), results
        assert any(isinstance(r, RedisTimeoutError) for r in results)
        assert pipe._proto is None  # dropped: the next command opens a new connection
    finally:
        await pipe.close()
        listener.close()


async def test_more_batches_in_flight_than_pooled_connections_all_commit(redis_server):
    """300 visitors' batches commit at once on one store: none is refused and Redis is never
    "down" (redis-py's default pool raised MaxConnectionsError, a ConnectionError, beyond 100)."""
    store = RedisStore(redis_server.url)

    async def one(i: int) -> bool:
        vid, sid = f"v_visitor{i:04d}", f"s_session{i:04d}"
        snap = await store.load(vid, sid)
        return await store.commit(vid, sid, snap, {"v": {"i": i}, "s": {"n": i}}, 5, 0, events(1, 5))

    assert await asyncio.gather(*(one(i) for i in range(300))) == [True] * 300
    assert not store.degraded and store.buffered_events == 0
    assert store.pipe is not None and store.pipe.writes < store.pipe.commands / 10
    reader = RedisStore(redis_server.url)  # what Redis holds, not this store's own cache
    for i in (0, 150, 299):
        snap = await reader.load(f"v_visitor{i:04d}", f"s_session{i:04d}")
        assert snap.ack == 5 and snap.profile == {"v": {"i": i}, "s": {"n": i}}
    await reader.close()
    await store.close()


async def test_a_connection_dropped_right_after_it_is_made_fails_the_command_instead_of_hanging():
    """A Redis at `maxclients` answers a new connection with an error and closes it. The command
    sent meanwhile was never written: it must fail (the store then degrades), not wait for ever."""

    async def full(reader, writer):
        writer.write(b"-ERR max number of clients reached\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(full, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = AutoPipeline(port=port, timeout=0.5)
    try:
        for _ in range(20):  # the race the audit found hung in 20 of 20 tries
            with pytest.raises((RedisConnectionError, ResponseError, RedisTimeoutError)):
                await asyncio.wait_for(pipe.execute("PING"), 2)
    finally:
        await pipe.close()
        server.close()
