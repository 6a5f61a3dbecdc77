"""Cross-process bus on Redis: presence, patch fan-out, resume outbox, config documents.

With several server processes (on one machine or many, behind a load balancer without sticky
sessions) the tabs of one visitor may sit on different processes. This module connects them:

* Presence: `ma:{vid}:pr` maps process id -> expiry (ms). A process registers the visitors it
  holds sockets for and refreshes them every `presence_ttl / 3`; a crashed process simply
  expires. Publishing reads presence in the same script that writes the outbox, so a patch
  costs one round trip when no other process holds the visitor (the common case).
* Patch fan-out: each process listens on its own channel `ma:proc:<pid>` (sharded pub/sub,
  SPUBLISH/SSUBSCRIBE, on a Redis 7 cluster so a message crosses one shard, not the whole
  cluster bus). `publish(vid, sid, messages)` reaches the sockets of session `sid` on every other
  process; `nudge(vid)` tells every other process holding the visitor that the shared visitor
  part of the profile changed, so it re-evaluates its sessions of that visitor (a hover in one
  tab may reorder the recommendations in the other; the engine decides, with that session's
  guards and patch sequence numbers).
* Resume outbox: `ma:{vid}:o:<sid>` keeps the last `outbox_size` patch messages of a session
  with their `pseq` (PROTOCOL §5). A client that reconnects to any process with the last pseq it
  applied gets the messages it missed and whether that recovery is complete (nothing missing
  between its pseq and the session's current one).
* Config documents (rules, experiments): stored as `ma:doc:<name>` with a version; a change is
  announced on `ma:changes` and every process also polls the versions every second, so a change
  made through any process is live everywhere within a second even if a pub/sub message was
  lost (pub/sub is at most once, e.g. across a Redis restart).

The gateway owns the sockets; this module never touches them. It calls back:
`on_messages(vid, sid, messages)`, `on_nudge(vid)`, `on_change(name, doc)`, `on_erase(vid)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import ujson
from redis.asyncio.cluster import RedisCluster

from . import metrics
from .outbox import Resume, resume_from
from .redis_pipe import AutoPipeline, run_script
from .store.redis import (
    REDIS_DOWN_ERRORS,
    check_id,
    connect,
    outbox_key,
    presence_key,
    session_key,
)

log = logging.getLogger("microadjust.bus")

CHANGES_CHANNEL = "ma:changes"
DOC_PREFIX = "ma:doc:"
# Visitors per presence refresh round trip; the rounds are spread over the refresh period.
PRESENCE_SLICE = 100

# KEYS: outbox, presence. ARGV: 1 now ms, 2 outbox size, 3 outbox ttl ms, 4 own pid, 5.. messages
# Appends to the bounded outbox and returns the other live processes holding the visitor.
PUBLISH_LUA = """
if #ARGV > 4 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 5))
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local pr = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #pr, 2 do
  if pr[i] ~= ARGV[4] and tonumber(pr[i + 1]) > tonumber(ARGV[1]) then
    table.insert(out, pr[i])
  end
end
return out
"""

# KEYS: outbox, session. Returns the session's current pseq and the outbox.
RESUME_LUA = """
return {redis.call('HGET', KEYS[2], 'pseq') or '0', redis.call('LRANGE', KEYS[1], 0, -1)}
"""

# KEYS: presence. ARGV: 1 pid, 2 expiry ms, 3 key ttl ms, 4 now ms. Returns the other live pids.
JOIN_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local pr = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #pr, 2 do
  if pr[i] ~= ARGV[1] and tonumber(pr[i + 1]) > tonumber(ARGV[4]) then
    table.insert(out, pr[i])
  end
end
return out
"""

# KEYS: document. ARGV: 1 JSON, 2 now ms. Returns {version, 1 if changed else 0}: storing the
# document that is already there (several processes picking up one file edit) changes nothing.
# The version is the later of the stored one + 1 and the writer's clock in ms, so it keeps rising
# when Redis restarts empty: processes adopt only a version above the last they saw, and a
# counter starting again at 1 would be ignored by every process that was running before.
SET_DOC_LUA = """
if redis.call('HGET', KEYS[1], 'doc') == ARGV[1] then
  return {tonumber(redis.call('HGET', KEYS[1], 'ver')), 0}
end
local ver = math.max(tonumber(redis.call('HGET', KEYS[1], 'ver') or '0') + 1, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'ver', ver, 'at', ARGV[2])
return {ver, 1}
"""


Callback = Callable[..., Awaitable[None] | None]


def default_process_id() -> str:
    """Unique per process and readable in `redis-cli`: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisBus:
    """See the module docstring. One per server process.

    Limits: `outbox_size` messages per session (default 64, ~300 B each) kept `outbox_ttl_s`
    (default 1 hour) after the last patch; `presence_ttl_s` (default 30 s): how long a crashed
    process is still considered to hold its visitors.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        cluster: bool | None = None,
        process_id: str | None = None,
        outbox_size: int = 64,
        outbox_ttl_s: int = 3600,
        presence_ttl_s: float = 30.0,
        doc_poll_s: float = 1.0,
    ) -> None:
        if client is None:
            if not url:
                raise ValueError("RedisBus needs a Redis URL or a client")
            client = connect(url, cluster=cluster)
        if outbox_size <= 0 or outbox_ttl_s <= 0 or presence_ttl_s <= 0:
            raise ValueError("outbox_size, outbox_ttl_s and presence_ttl_s must be positive")
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.process_id = process_id or default_process_id()
        self.channel = f"ma:proc:{self.process_id}"
        self.outbox_size = outbox_size
        self.outbox_ttl_ms = int(outbox_ttl_s * 1000)
        self.presence_ttl_ms = int(presence_ttl_s * 1000)
        self.doc_poll_s = doc_poll_s
        self.on_messages: Callback | None = None
        self.on_nudge: Callback | None = None
        self.on_change: Callback | None = None
        self.on_erase: Callback | None = None
        self._publish = client.register_script(PUBLISH_LUA)
        # `publish` and `nudge` run per batch with patches: one auto-pipelined connection
        # (`redis_pipe`) on a single Redis; redis-py's cluster client on a cluster.
        self.pipe = None if self.cluster else AutoPipeline.for_client(client, timeout=1.0)
        self._resume = client.register_script(RESUME_LUA)
        self._join = client.register_script(JOIN_LUA)
        self._set_doc = client.register_script(SET_DOC_LUA)
        self._local: dict[str, int] = {}  # vid -> local sockets
        # vid -> monotonic time until which another process is known to hold the visitor too.
        # Lets the gateway skip the nudge round trip for the (common) single-process visitor.
        self._shared: dict[str, float] = {}
        self._watched: dict[str, int] = {}  # document name -> version last seen
        self._tasks: list[asyncio.Task] = []
        self._subscribed = {False: asyncio.Event(), True: asyncio.Event()}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe and start the presence refresher; returns once subscribed."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(sharded=False)),
            loop.create_task(self._refresh_presence()),
            loop.create_task(self._poll_documents()),
        ]
        waits = [self._subscribed[False].wait()]
        if self.cluster:
            self._tasks.append(loop.create_task(self._listen(sharded=True)))
            waits.append(self._subscribed[True].wait())
        await asyncio.wait_for(asyncio.gather(*waits), timeout=10)

    async def close(self) -> None:
        """Leave every visitor's presence, stop listening, disconnect."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a listener stuck in a dead connection's close must not hold up shutdown.
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            if stuck:
                log.warning("bus close: %d task(s) did not stop within 5 s", len(stuck))
        if self._local:
            try:
                pipe = self.client.pipeline(transaction=False)
                for vid in self._local:
                    pipe.hdel(presence_key(vid), self.process_id)
                await pipe.execute()
            except REDIS_DOWN_ERRORS:
                pass  # presence expires on its own
        self._local.clear()
        if self.pipe is not None:
            await self.pipe.close()
        await self.client.aclose()

    # ------------------------------------------------------------------ presence

    async def join(self, vid: str) -> None:
        """A socket of `vid` opened on this process."""
        check_id(vid, "visitor id")
        self._local[vid] = self._local.get(vid, 0) + 1
        if self._local[vid] == 1:
            others = await self._mark_present([vid])
            if others:
                self._note_shared(vid)
                # Tell them, so they nudge this process when the visitor part changes there.
                try:
                    await self._send(others, {"k": "joined", "vid": vid})
                except REDIS_DOWN_ERRORS:
                    pass

    def shared(self, vid: str) -> bool:
        """True when another live process holds sockets of `vid` (worth a `nudge`)."""
        until = self._shared.get(vid)
        if until is None:
            return False
        if until < time.monotonic():
            del self._shared[vid]
            return False
        return True

    def _note_shared(self, vid: str) -> None:
        if vid in self._local:
            self._shared[vid] = time.monotonic() + self.presence_ttl_ms / 1000

    async def leave(self, vid: str) -> None:
        """A socket of `vid` closed on this process."""
        left = self._local.get(vid, 0) - 1
        if left > 0:
            self._local[vid] = left
            return
        self._local.pop(vid, None)
        self._shared.pop(vid, None)
        try:
            await self.client.hdel(presence_key(vid), self.process_id)
        except REDIS_DOWN_ERRORS:
            pass  # expires after presence_ttl

    async def _mark_present(self, vids: list[str]) -> list[str]:
        """Refresh this process's presence for `vids`; returns the other live processes holding
        the first of them (joins pass one visitor) and notes every shared visitor."""
        now = int(time.time() * 1000)
        expiry = now + self.presence_ttl_ms
        started = time.perf_counter()
        try:
            if len(vids) == 1:
                others = await self._join(
                    keys=[presence_key(vids[0])],
                    args=[self.process_id, expiry, self.presence_ttl_ms, now],
                )
                replies = [others]
            else:
                pipe = self.client.pipeline(transaction=False)
                for vid in vids:
                    pipe.hset(presence_key(vid), self.process_id, expiry)
                    pipe.pexpire(presence_key(vid), self.presence_ttl_ms)
                    pipe.hgetall(presence_key(vid))
                raw = await pipe.execute()
                replies = [
                    [p for p, exp in entries.items() if p != self.process_id and int(exp) > now]
                    for entries in raw[2::3]
                ]
        except REDIS_DOWN_ERRORS as exc:
            metrics.REDIS_ERRORS.labels("presence").inc()
            log.warning("presence update failed: %s", exc)
            return []
        metrics.redis_rtt("presence").observe(time.perf_counter() - started)
        for vid, others in zip(vids, replies):
            if others:
                self._note_shared(vid)
        return list(replies[0]) if replies else []

    async def _refresh_presence(self) -> None:
        """Refresh this process's presence for every local visitor once per third of the TTL,
        in slices of PRESENCE_SLICE visitors spread evenly over that period. All at once, 1,000
        visitors were a 3,000-command pipeline and 1,000 replies to read: tens of milliseconds
        in which no socket was served, once per period (docs/PERFORMANCE.md, "Garbage collector: what
        a message allocates dies young", Redis mode)."""
        period = self.presence_ttl_ms / 3000
        loop = asyncio.get_running_loop()
        while True:
            vids = list(self._local)
            slices = [vids[i : i + PRESENCE_SLICE] for i in range(0, len(vids), PRESENCE_SLICE)] or [[]]
            gap = period / len(slices)
            start = loop.time()
            for k, part in enumerate(slices, 1):
                # Each slice at its own time in the period (not a gap after the last round
                # trip): slow replies do not stretch the period towards the TTL.
                await asyncio.sleep(max(0.0, start + k * gap - loop.time()))
                part = [vid for vid in part if vid in self._local]  # not one that left meanwhile
                if part:
                    await self._mark_present(part)

    async def present(self, vid: str) -> list[str]:
        """Live process ids holding sockets of `vid`."""
        now = int(time.time() * 1000)
        entries = await self.client.hgetall(presence_key(vid))
        return sorted(p for p, exp in entries.items() if int(exp) > now)

    # ------------------------------------------------------------------ patches

    async def publish(self, vid: str, sid: str, messages: list[dict[str, Any]]) -> int:
        """Record patch/revert messages (with their pseq) for resume and send them to the
        sockets of session `sid` on other processes. Local sockets are the caller's to serve.

        Returns the number of other processes the messages were sent to.
        """
        check_id(vid, "visitor id")
        check_id(sid, "session id")
        raw = [ujson.dumps(m, ensure_ascii=False) for m in messages]
        started = time.perf_counter()
        try:
            pids = await self._run_publish(
                [outbox_key(vid, sid), presence_key(vid)],
                [int(time.time() * 1000), self.outbox_size, self.outbox_ttl_ms,
                 self.process_id, *raw],
            )
            metrics.redis_rtt("publish").observe(time.perf_counter() - started)
            if pids and messages:
                await self._send(pids, {"k": "msgs", "vid": vid, "sid": sid, "msgs": messages})
        except REDIS_DOWN_ERRORS as exc:
            # Local sockets were served by the caller; a reconnect finds the gap (resume says
            # incomplete) rather than the caller failing the batch.
            metrics.REDIS_ERRORS.labels("publish").inc()
            log.warning("publish to other processes failed: %s", exc)
            return 0
        return len(pids)

    async def nudge(self, vid: str) -> int:
        """Tell the other processes holding `vid` that its visitor profile part changed."""
        # The publish script with no messages only reads presence; the outbox key is unused
        # (passed so that the script's keys stay the same shape, all in the visitor's slot).
        try:
            pids = await self._run_publish(
                [outbox_key(vid, "_"), presence_key(vid)],
                [int(time.time() * 1000), self.outbox_size, self.outbox_ttl_ms,
                 self.process_id],
            )
            if pids:
                await self._send(pids, {"k": "nudge", "vid": vid})
        except REDIS_DOWN_ERRORS as exc:
            metrics.REDIS_ERRORS.labels("nudge").inc()
            log.warning("nudge failed: %s", exc)
            return 0
        return len(pids)

    def _run_publish(self, keys: list[str], args: list[Any]):
        return run_script(self.pipe, self._publish, keys, args)

    async def _send(self, pids: list[str], payload: dict[str, Any]) -> None:
        body = ujson.dumps(payload, ensure_ascii=False)
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            if self.cluster:
                pipe.execute_command("SPUBLISH", f"ma:proc:{pid}", body)
            else:
                pipe.publish(f"ma:proc:{pid}", body)
        await pipe.execute()
        metrics.BUS_MESSAGES.labels("sent", payload["k"]).inc(len(pids))

    async def resume(self, vid: str, sid: str, last_pseq: int, current: int = 0) -> Resume:
        """The patch messages a reconnecting session missed since `last_pseq` (PROTOCOL §2.3).

        `complete` is False when some were trimmed from the bounded outbox or expired, or when
        the client claims a pseq the server does not know (its state expired or was erased):
        the client should then drop patches it cannot trust to be current. `current` is the
        session pseq the caller already loaded (the one in Redis is read here too).
        """
        check_id(vid, "visitor id")
        check_id(sid, "session id")
        started = time.perf_counter()
        try:
            stored, raw = await self._resume(keys=[outbox_key(vid, sid), session_key(vid, sid)])
        except REDIS_DOWN_ERRORS as exc:
            metrics.REDIS_ERRORS.labels("resume").inc()
            log.warning("resume unavailable: %s", exc)
            return Resume(messages=[], complete=False, pseq=max(last_pseq, current))
        metrics.redis_rtt("resume").observe(time.perf_counter() - started)
        return resume_from((ujson.loads(item) for item in raw), last_pseq, max(int(stored), current))

    # ------------------------------------------------------------------ config documents

    async def put_document(self, name: str, doc: Any) -> int:
        """Store a config document (rules, experiments) and announce it; returns its version.

        Storing the document already stored is a no-op (same version, no announcement)."""
        body = ujson.dumps(doc, ensure_ascii=False)
        version, changed = await self._set_doc(keys=[DOC_PREFIX + name], args=[body, int(time.time() * 1000)])
        version = int(version)
        self._watched[name] = max(version, self._watched.get(name, 0))
        if changed:
            await self.client.publish(
                CHANGES_CHANNEL,
                ujson.dumps({"k": "doc", "name": name, "ver": version, "from": self.process_id}),
            )
        return version

    async def get_document(self, name: str) -> tuple[Any, int]:
        """(document, version); (None, 0) when it was never stored."""
        doc, version, _ = await self.read_document(name)
        return doc, version

    async def read_document(self, name: str) -> tuple[Any, int, int]:
        """(document, version, stored at ms since the epoch); (None, 0, 0) when never stored."""
        raw = await self.client.hmget(DOC_PREFIX + name, "doc", "ver", "at")
        if raw[0] is None:
            return None, 0, 0
        return ujson.loads(raw[0]), int(raw[1]), int(raw[2] or 0)

    def watch(self, name: str, version: int = 0) -> None:
        """Call `on_change(name, doc)` whenever the document changes (from any process)."""
        self._watched.setdefault(name, version)

    async def publish_erase(self, vid: str) -> None:
        """After `Store.erase_visitor`: every process forgets the visitor and closes its sockets."""
        await self.client.publish(
            CHANGES_CHANNEL, ujson.dumps({"k": "erase", "vid": vid, "from": self.process_id})
        )

    async def _check_document(self, name: str, announced: int | None = None) -> None:
        seen = self._watched.get(name)
        if seen is None or (announced is not None and announced <= seen):
            return
        doc, version = await self.get_document(name)
        if version > self._watched.get(name, 0):
            self._watched[name] = version
            await _call(self.on_change, name, doc)

    async def _poll_documents(self) -> None:
        """Safety net for lost pub/sub messages: compare versions every `doc_poll_s`."""
        while True:
            await asyncio.sleep(self.doc_poll_s)
            for name in list(self._watched):
                try:
                    await self._check_document(name)
                except REDIS_DOWN_ERRORS:
                    break
                except Exception:  # noqa: BLE001 - a bad callback must not stop the poller
                    log.exception("config document %s: change handler failed", name)

    # ------------------------------------------------------------------ listening

    async def _listen(self, sharded: bool) -> None:
        """Receive on one subscription; resubscribe after connection errors.

        Single Redis: one connection subscribed to this process's channel and the changes
        channel. Cluster: this process's channel is a shard channel (SSUBSCRIBE on the node that
        owns its slot), the changes channel a classic broadcast one, each on its own connection.
        """
        while True:
            pubsub = None
            try:
                if self.cluster:
                    await self.client.initialize()  # pub/sub routing needs the slot map first
                pubsub = self.client.pubsub()
                if sharded:
                    await pubsub.ssubscribe(self.channel)
                elif self.cluster:
                    await pubsub.subscribe(CHANGES_CHANNEL)
                else:
                    await pubsub.subscribe(self.channel, CHANGES_CHANNEL)
                self._subscribed[sharded].set()
                while True:
                    if sharded:
                        msg = await pubsub.get_sharded_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                    else:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg and msg.get("type") in ("message", "smessage"):
                        await self._dispatch(msg["data"])
            except asyncio.CancelledError:
                if pubsub is not None:
                    await _quietly(pubsub.aclose())
                raise
            except REDIS_DOWN_ERRORS as exc:
                log.warning("bus subscription lost, resubscribing: %s", exc)
                if pubsub is not None:
                    await _quietly(pubsub.aclose())
                await asyncio.sleep(0.2)

    async def _dispatch(self, data: str) -> None:
        try:
            payload = ujson.loads(data)
            kind = payload["k"]
            if payload.get("from") == self.process_id:
                return
            metrics.BUS_MESSAGES.labels("received", kind).inc()
            if "vid" in payload and kind in ("msgs", "nudge", "joined"):
                self._note_shared(payload["vid"])
            if kind == "msgs":
                await _call(self.on_messages, payload["vid"], payload["sid"], payload["msgs"])
            elif kind == "nudge":
                await _call(self.on_nudge, payload["vid"])
            elif kind == "doc":
                await self._check_document(payload["name"], payload["ver"])
            elif kind == "erase":
                await _call(self.on_erase, payload["vid"])
        except REDIS_DOWN_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - one bad message or handler must not stop the bus
            log.exception("bus message could not be handled: %.200s", data)


async def _call(callback: Callback | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if asyncio.iscoroutine(result):
        await result


async def _quietly(awaitable, timeout: float = 2.0) -> None:
    """Close something that may be broken: errors ignored, and at most `timeout` seconds, since
    redis-py's pub/sub close can wait on a connection a cancelled reader left half-used. Not
    `wait_for`: on timeout it cancels and then waits for the close to end, however long."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("closing a redis pub/sub connection took over %.0f s; left behind", timeout)
        task.cancel()
        return
    if not task.cancelled():
        task.exception()  # retrieved: closing a broken connection may fail; nothing to do


@dataclass
class RedisMode:
    """The three Redis adapters of one server process, built from one URL (`--redis`)."""

    store: Any  # store.redis.RedisStore
    bus: RedisBus
    log: Any  # redis_log.RedisEventLog

    async def close(self, timeout: float = 5.0) -> None:
        """Drain order: flush the store's buffered writes first, then leave presence."""
        await self.store.close(timeout=timeout)
        await self.bus.close()
        await self.log.close()


async def open_redis_mode(
    url: str, *, cluster: bool | None = None, retention_s: int | None = None,
    process_id: str | None = None,
) -> RedisMode:
    """Connect store, bus and log to `url` and start the bus (subscriptions, presence).

    Errors in the URL raise ValueError at once. An unreachable Redis does not prevent start-up:
    the store starts degraded (`ready()` False) and the bus keeps retrying its subscription.
    """
    from .redis_log import RedisEventLog  # noqa: PLC0415 - keeps this module's imports small
    from .store.redis import RedisStore  # noqa: PLC0415

    store_kwargs = {} if retention_s is None else {"retention_s": retention_s}
    store = RedisStore(url, cluster=cluster, **store_kwargs)
    bus = RedisBus(url, cluster=cluster, process_id=process_id)
    log_ = RedisEventLog(url, cluster=cluster)
    bus.on_erase = store.forget_visitor
    try:
        await bus.start()
    except (asyncio.TimeoutError, *REDIS_DOWN_ERRORS) as exc:
        log.warning("redis not reachable at start-up; running degraded until it is: %s", exc)
    return RedisMode(store=store, bus=bus, log=log_)


def attach_gateway(bus: RedisBus, gateway: Any, store: Any) -> None:
    """Wire the bus's callbacks to a gateway (`gateway.Gateway`) and a store (`RedisStore`).

    Handlers that touch the store run as tasks so the bus's listener never waits on Redis.
    """
    tasks: set[asyncio.Task] = set()

    def spawn(coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_erase(vid: str) -> None:
        store.forget_visitor(vid)
        for conn in list(gateway.registry.by_visitor.get(vid, ())):
            # The visitor's data is gone; its tabs start afresh on their next connection.
            spawn(conn.close(1000, ""))

    bus.on_messages = gateway.registry.deliver
    bus.on_nudge = lambda vid: spawn(gateway.reevaluate(vid))
    bus.on_erase = on_erase
    gateway.bus = bus
