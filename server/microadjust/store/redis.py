"""Redis store: profiles, sequence numbers and the event log shared by many server processes.

The production `Store` (see `store/__init__.py` for the contract). A session's load is served from
the state this process last committed for it (see `_own`); one Lua script per batch does
the compare-and-set on the visitor and session versions and, when they still match, writes both
profile parts, the session's `ack` and `pseq`, sets the inactivity TTLs of keys it creates (and
refreshes them when due, `refresh_s`, not on every batch) and logs the batch's events as one
stream entry, atomically and in one round trip. The layout, the scripts and the fault behaviour
are documented in `docs/SCALING.md`; the summary:

    ma:{vid}:v          hash  p (visitor profile JSON), ver
    ma:{vid}:s:<sid>    hash  p (session profile JSON), ver, ack, pseq
    ma:{vid}:ss         set   the visitor's session ids (export, erasure)
    ma:{vid}:ev         list  stream ids of the visitor's logged batches (erasure by id)
    ma:{vid}:pend       list  accepted batches not yet in the stream (cluster mode only)
    ma:{vid}:o:<sid>    list  patch outbox for resume (`redis_bus`)
    ma:{vid}:pr         hash  presence: process id -> expiry ms (`redis_bus`)
    ma:events           stream  the event log, one entry per accepted batch (`redis_log`)

Every per-visitor key carries the hash tag `{vid}` so a script's keys share one Redis Cluster
slot. The event stream is not per visitor, so on a cluster it usually lives in another slot:
there the commit script appends the events to `ma:{vid}:pend` (atomically with the ack: an
acked event is in Redis) and a forwarder moves them to the stream right after (commit first,
with an outbox). On a single Redis the script writes the stream directly.

When Redis is unreachable the store degrades instead of failing: loads are served from an
in-process cache of recently used sessions, commits go to a bounded write buffer (they are
acked: the events are held in memory) and are flushed when Redis answers again. `ready()` is
False meanwhile. At the bound, `commit` raises `StoreUnavailable`: the batch is not acked, so
the tracker keeps it in its resend buffer and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import ujson
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import jsonfast, metrics
from ..redis_pipe import AutoPipeline, run_script
from . import SessionSnapshot, Store, StoreUnavailable, part_bytes, part_object

log = logging.getLogger("microadjust.store.redis")

# PROTOCOL §2.2: ids are [A-Za-z0-9_-]{8,64}. Checked again here because they become key names:
# a `{` or `}` would break the hash tag and a `:` the layout.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")

# Errors that mean "Redis cannot take writes right now", as opposed to a bug (a script error):
# unreachable, or answering but refusing (memory full, a replica after a failover, loading its
# data, its master down). Either way the store buffers and probes, and /readyz is red.
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    BusyLoadingError,
    MasterDownError,
)

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Pooled redis-py connections per process (per node on a cluster). The per-batch scripts of a
# single Redis go through one auto-pipelined connection (`redis_pipe`) and do not count here. The
# cluster client has no blocking pool and refuses a command beyond its bound, so its bound is set
# above any realistic number of sockets' batches in flight at once.
MAX_CONNECTIONS = 64
MAX_CLUSTER_CONNECTIONS = 10_000


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{what} must match [A-Za-z0-9_-]{{1,64}}, got {value!r}")
    return value


# ---------------------------------------------------------------------------- key layout

def visitor_prefix(vid: str) -> str:
    return f"ma:{{{vid}}}:"


def visitor_key(vid: str) -> str:
    return f"ma:{{{vid}}}:v"


def session_key(vid: str, sid: str) -> str:
    return f"ma:{{{vid}}}:s:{sid}"


def sessions_key(vid: str) -> str:
    return f"ma:{{{vid}}}:ss"


def event_index_key(vid: str) -> str:
    return f"ma:{{{vid}}}:ev"


def pending_key(vid: str) -> str:
    return f"ma:{{{vid}}}:pend"


def erased_key(vid: str) -> str:
    """When the visitor was last erased (ms): a process cut off from Redis meanwhile must not
    write back what it buffered before that (FLUSH_VISITOR_LUA, FLUSH_SESSION_LUA)."""
    return f"ma:{{{vid}}}:x"


ERASED_TTL_MS = 7 * 24 * 3600 * 1000  # how long a tombstone outlives an erasure: longer than any outage a buffer rides out


def logged_key(vid: str, sid: str) -> str:
    """The last seq of each batch of the session in the log (COMMIT_LUA, FLUSH_SESSION_LUA)."""
    return f"ma:{{{vid}}}:lb:{sid}"


def outbox_key(vid: str, sid: str) -> str:
    return f"ma:{{{vid}}}:o:{sid}"


def presence_key(vid: str) -> str:
    return f"ma:{{{vid}}}:pr"


EVENT_STREAM = "ma:events"


# ---------------------------------------------------------------------------- connections

def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def connect(url: str, *, timeout: float = 1.0, cluster: bool | None = None):
    """A redis-py asyncio client for `url`.

    `redis://host:port/db` (or `rediss://`, TLS) is one Redis; `redis+cluster://host:port` (or
    `rediss+cluster://`) a Redis Cluster, discovered from that node (more seed nodes may be
    listed comma-separated: `redis+cluster://h1:7000,h2:7000`). `cluster=True` forces cluster
    mode for a plain URL (the `--redis-cluster` flag).

    Operations time out after `timeout` seconds and are retried once at most: a Redis that does
    not answer must send the store into its degraded mode quickly, not stall every batch.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("redis", "rediss", *CLUSTER_SCHEMES):
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r} in {url!r}: use redis://, rediss://, "
            "redis+cluster:// or rediss+cluster://"
        )
    want_cluster = scheme in CLUSTER_SCHEMES or bool(cluster)
    common = dict(
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
    )
    if not want_cluster:
        # A blocking pool: beyond `max_connections` commands in flight a caller waits (up to
        # `timeout`) for a connection. redis-py's default pool raises MaxConnectionsError at 100,
        # a ConnectionError that would read as "Redis is down" under a burst of traffic.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout,
            retry=Retry(NoBackoff(), 1), **common,
        )
        return aioredis.Redis(connection_pool=pool)
    base_scheme = CLUSTER_SCHEMES.get(scheme, scheme)
    hosts = parts.netloc.rsplit("@", 1)
    auth = hosts[0] + "@" if len(hosts) == 2 else ""
    seeds = hosts[-1].split(",")
    first = urlunsplit((base_scheme, auth + seeds[0], parts.path, parts.query, ""))
    extra = []
    for seed in seeds[1:]:
        host, _, port = seed.rpartition(":")
        extra.append(ClusterNode(host, int(port)))
    client = RedisCluster.from_url(
        first, retry=Retry(NoBackoff(), 1), max_connections=MAX_CLUSTER_CONNECTIONS, **common
    )
    if extra:
        client.nodes_manager.startup_nodes.update({n.name: n for n in extra})
    return client


# ---------------------------------------------------------------------------- scripts

# KEYS: visitor, session. Returns the stored parts, versions and sequence numbers.
LOAD_LUA = """
local v = redis.call('HMGET', KEYS[1], 'p', 'ver')
local s = redis.call('HMGET', KEYS[2], 'p', 'ver', 'ack', 'pseq')
return {v[1], v[2], s[1], s[2], s[3], s[4]}
"""

# KEYS: 1 visitor, 2 session, 3 sessions set, 4 event index, 5 pending, 6 logged batches,
#       [7 stream: inline only]
# ARGV: 1 visitor ver, 2 session ver, 3 visitor JSON, 4 session JSON, 5 ack, 6 pseq, 7 ttl ms,
#       8 sid, 9 inline ('1': XADD here; '0': append to pending), 10 stream maxlen,
#       11 refresh ('1': the TTLs are due), [12 the batch's log entry (JSON), 13 its last seq:
#       both absent without events]
# The logged-batches set (a sorted set, the last seq of each batch logged for the session, the
# newest LOGGED_BATCHES kept) is how a flush after an outage tells a batch that is already in the
# log (its commit ran, the reply was lost) from one that is not: the stored ack cannot, since
# another process may have acked newer batches of the same session meanwhile.
# Returns {1, new visitor ver, new session ver, pending length} or {0, visitor ver, session ver}.
# A key gets its TTL when the script creates it (version 0, first member, first list element) and
# again whenever the caller says a refresh is due (`RedisStore.refresh_s`), not on every batch.
LOGGED_BATCHES = 1000  # per session; a batch buffered behind 1,000 newer ones is judged by the ack
COMMIT_LUA = """
local vver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
local sver = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
if vver ~= tonumber(ARGV[1]) or sver ~= tonumber(ARGV[2]) then
  return {0, vver, sver}
end
local ttl = ARGV[7]
local refresh = ARGV[11] == '1'
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'ver', vver + 1)
redis.call('HSET', KEYS[2], 'p', ARGV[4], 'ver', sver + 1, 'ack', ARGV[5], 'pseq', ARGV[6])
if refresh or vver == 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if refresh or sver == 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('SADD', KEYS[3], ARGV[8])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local pending = 0
if ARGV[12] then
  redis.call('ZADD', KEYS[6], ARGV[13], ARGV[13])
  if redis.call('ZCARD', KEYS[6]) > LOGGED_BATCHES then
    redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -LOGGED_BATCHES - 1)
  end
  if refresh or sver == 0 then redis.call('PEXPIRE', KEYS[6], ttl) end
  if ARGV[9] == '1' then
    local id = redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[10], '*', 'b', ARGV[12])
    if redis.call('RPUSH', KEYS[4], id) == 1 or refresh then redis.call('PEXPIRE', KEYS[4], ttl) end
  else
    pending = redis.call('RPUSH', KEYS[5], ARGV[12])
    redis.call('PEXPIRE', KEYS[5], ttl)
  end
elseif refresh then
  redis.call('PEXPIRE', KEYS[4], ttl)
end
if pending == 0 and ARGV[9] == '0' then pending = redis.call('LLEN', KEYS[5]) end
return {1, vver + 1, sver + 1, pending}
""".replace("LOGGED_BATCHES", str(LOGGED_BATCHES))

# After a degraded period: write the visitor part unless another process changed it meanwhile, or
# the visitor was erased after the buffer began (its tombstone).
# KEYS: visitor, tombstone. ARGV: 1 base ver (what the buffered state started from), 2 JSON,
# 3 ttl ms, 4 when the buffer began (ms).
FLUSH_VISITOR_LUA = """
local erased = redis.call('GET', KEYS[2])
if erased and tonumber(ARGV[4]) <= tonumber(erased) then return 0 end
local ver = redis.call('HGET', KEYS[1], 'ver')
if ver and tonumber(ver) ~= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 0
end
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'ver', tonumber(ver or '0') + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: 1 session, 2 sessions set, 3 event index, 4 pending, 5 logged batches, 6 tombstone,
#       [7 stream: inline only]
# ARGV: 1 base ver, 2 session JSON, 3 ack, 4 pseq, 5 ttl, 6 sid, 7 inline, 8 maxlen, 9 when the
#       buffer began (ms), 10.. triples (last seq, receive time ms, batch log entry).
# A batch already in the log (its commit ran before the connection failed) is skipped: its last
# seq is in the logged-batches set, or, below what that set still holds, at or below the stored
# ack. If the visitor was erased after the buffer began (its tombstone), the session's buffered
# state is not written back, nor any batch received before the erasure.
FLUSH_SESSION_LUA = """
local erased = tonumber(redis.call('GET', KEYS[6]) or '-1')
local ttl = ARGV[5]
local cur = redis.call('HMGET', KEYS[1], 'ver', 'ack', 'pseq')
local ver = tonumber(cur[1] or '0')
local stored_ack = tonumber(cur[2] or '0')
if tonumber(ARGV[9]) > erased then
  if (not cur[1]) or ver == tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'p', ARGV[2])
  end
  redis.call('HSET', KEYS[1], 'ver', ver + 1,
    'ack', math.max(stored_ack, tonumber(ARGV[3])),
    'pseq', math.max(tonumber(cur[3] or '0'), tonumber(ARGV[4])))
  redis.call('SADD', KEYS[2], ARGV[6])
end
local added = 0
local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')[2]
oldest = oldest and tonumber(oldest) or math.huge
for i = 10, #ARGV, 3 do
  local last = tonumber(ARGV[i])
  local logged
  if tonumber(ARGV[i + 1]) <= erased then
    logged = true  -- received before the erasure: erased with the rest
  elseif last >= oldest then
    logged = redis.call('ZSCORE', KEYS[5], ARGV[i])
  else
    logged = last <= stored_ack
  end
  if not logged then
    redis.call('ZADD', KEYS[5], last, ARGV[i])
    if ARGV[7] == '1' then
      local id = redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[8], '*', 'b', ARGV[i + 2])
      redis.call('RPUSH', KEYS[3], id)
    else
      redis.call('RPUSH', KEYS[4], ARGV[i + 2])
    end
    added = added + 1
  end
end
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
return added
"""

# Cluster mode: the first `count` pending batches were added to the stream with `ids`. Drop them
# from the pending list unless the visitor was erased (or another process forwarded them) in
# between; 0 tells the caller to delete its stream entries again.
# KEYS: pending, event index. ARGV: 1 count, 2 first record forwarded, 3 ttl, 4.. stream ids
FORWARDED_LUA = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[2] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Everything stored under the visitor's hash tag. The session and outbox keys are derived from
# the session set inside the script: they share the tag, hence the slot, so this is valid on a
# cluster too. KEYS: visitor, sessions set, event index, pending. ARGV: 1 key prefix.
EXPORT_LUA = """
local sids = redis.call('SMEMBERS', KEYS[2])
local sessions = {}
for _, sid in ipairs(sids) do
  local s = redis.call('HMGET', ARGV[1] .. 's:' .. sid, 'p', 'ack', 'pseq')
  local o = redis.call('LRANGE', ARGV[1] .. 'o:' .. sid, 0, -1)
  table.insert(sessions, {sid, s[1], s[2], s[3], o})
end
return {redis.call('HGET', KEYS[1], 'p'), sessions, redis.call('LRANGE', KEYS[3], 0, -1),
        redis.call('LRANGE', KEYS[4], 0, -1)}
"""

# KEYS: visitor, sessions set, event index, pending, presence. ARGV: 1 key prefix.
# Returns the stream ids of the visitor's events, for XDEL.
ERASE_LUA = """
local sids = redis.call('SMEMBERS', KEYS[2])
for _, sid in ipairs(sids) do
  redis.call('DEL', ARGV[1] .. 's:' .. sid, ARGV[1] .. 'o:' .. sid, ARGV[1] .. 'lb:' .. sid)
end
local ids = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[3])
return ids
"""


_dump = jsonfast.dumps  # bytes; redis-py and the auto-pipeline send them as they are


def _bytes(raw: Any) -> bytes | None:
    """A profile part as Redis returned it (bytes; str from a client that decodes), None if absent."""
    if not raw:
        return None
    return raw.encode() if isinstance(raw, str) else raw


def event_record(vid: str, sid: str, event: dict[str, Any], at: int) -> dict[str, Any]:
    """The log record of an accepted event: the event (with its `seq`) plus who and when.

    `at` is the server's receive time in ms. The same record is written as a JSON line in the
    embedded mode; on Redis a batch's records share one stream entry (`batch_entry`).
    """
    return {"vid": vid, "sid": sid, "at": at, **event}


def batch_entry(vid: str, sid: str, events: list[dict[str, Any]], at: int) -> bytes:
    """The `b` field of the stream entry that logs one accepted batch (JSON).

    `{"vid", "sid", "at", "ev": [event, ...]}`: who and when once, then the batch's events with
    their `seq`. `entry_records` turns it back into the per-event records of `event_record`.
    One entry per batch rather than per event: the commit script's `XADD` and index push were
    most of its Redis CPU (docs/PERFORMANCE.md, "Redis mode vs memory mode").
    """
    return _dump({"vid": vid, "sid": sid, "at": at, "ev": events})


def entry_records(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The event records of one stream entry: a batch (`b`) or a single record (`e`)."""
    raw = fields.get("b")
    if raw is None:
        raw = fields.get("e")
        return [ujson.loads(raw)] if raw is not None else []
    return batch_records(ujson.loads(raw))


def batch_records(batch: dict[str, Any]) -> list[dict[str, Any]]:
    vid, sid, at = batch["vid"], batch["sid"], batch["at"]
    return [{"vid": vid, "sid": sid, "at": at, **e} for e in batch["ev"]]


# ---------------------------------------------------------------------------- degraded mode

# The cache keeps profile parts serialised (the JSON bytes Redis holds), as the embedded store
# does, and `load` parses them into a snapshot its caller owns: as objects, 1,000 cached
# sessions were ~100,000 dicts and lists for the garbage collector to walk (docs/PERFORMANCE.md,
# "Garbage collector: what a message allocates dies young", Redis mode).
@dataclass(slots=True)
class _CachedSession:
    profile: bytes | None
    version: int
    ack: int
    pseq: int
    refreshed: float = float("-inf")  # monotonic time this process last refreshed its keys' TTLs


@dataclass(slots=True)
class _CachedVisitor:
    profile: bytes | None
    version: int


@dataclass
class _BufferedVisitor:
    base: int  # the Redis version the buffered state was computed from
    profile: Any
    since: int  # when the buffer began (ms): an erasure after it voids it (FLUSH_VISITOR_LUA)


@dataclass
class _BufferedSession:
    base: int
    profile: Any
    ack: int
    pseq: int
    since: int  # when the buffer began (ms), as _BufferedVisitor.since
    # (last seq, number of events, batch log entry JSON, receive time ms) per buffered batch
    batches: list[tuple[int, int, bytes, int]] = field(default_factory=list)


class _Down(Exception):
    """Internal: a Redis call failed because Redis is unreachable."""


class RedisStore(Store):
    """Profiles and sequence numbers in Redis (single instance or cluster); see module doc.

    Limits (each costs memory only during an outage or for the degraded-mode cache):
    - `retention_s`: inactivity TTL of every per-visitor key (default 30 days). A key gets it
      when it is created; an active session refreshes it every `refresh_s` (1% of the
      retention, at most a minute), so keys expire between `retention_s - refresh_s` and
      `retention_s` after the visitor's last batch.
    - `stream_maxlen`: approximate bound of the event stream (default 1,000,000 entries, ~300 MB
      of Redis memory at ~300 B per event).
    - `buffer_limit`: events held in memory while Redis is down (default 100,000, ~40 MB).
    - `cache_sessions`: sessions whose last state is kept to serve loads while Redis is down
      (default 10,000; a few KB each).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        cluster: bool | None = None,
        retention_s: int = 30 * 24 * 3600,
        stream: str = EVENT_STREAM,
        stream_maxlen: int = 1_000_000,
        buffer_limit: int = 100_000,
        cache_sessions: int = 10_000,
        timeout: float = 1.0,
        probe_interval: float = 0.25,
        clock=time.time,
    ) -> None:
        if client is None:
            if not url:
                raise ValueError("RedisStore needs a Redis URL or a client")
            client = connect(url, timeout=timeout, cluster=cluster)
        if retention_s <= 0:
            raise ValueError(f"retention_s must be positive, got {retention_s}")
        if buffer_limit <= 0 or cache_sessions <= 0 or stream_maxlen <= 0:
            raise ValueError("buffer_limit, cache_sessions and stream_maxlen must be positive")
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.ttl_ms = int(retention_s * 1000)
        self.refresh_s = min(retention_s / 100, 60.0)
        self.stream = stream
        self.stream_maxlen = stream_maxlen
        self.buffer_limit = buffer_limit
        self.cache_sessions = cache_sessions
        self.probe_interval = probe_interval
        self._clock = clock
        self._inline = "0" if self.cluster else "1"
        self._load = client.register_script(LOAD_LUA)
        self._commit = client.register_script(COMMIT_LUA)
        self._flush_v = client.register_script(FLUSH_VISITOR_LUA)
        self._flush_s = client.register_script(FLUSH_SESSION_LUA)
        self._forwarded = client.register_script(FORWARDED_LUA)
        self._export = client.register_script(EXPORT_LUA)
        self._erase = client.register_script(ERASE_LUA)
        # The per-batch scripts (load, commit) share one auto-pipelined connection on a single
        # Redis (`redis_pipe`); a cluster (or TLS) keeps redis-py's client for them too.
        self.pipe = None if self.cluster else AutoPipeline.for_client(client, timeout)
        self._vcache: OrderedDict[str, _CachedVisitor] = OrderedDict()
        self._scache: OrderedDict[tuple[str, str], _CachedSession] = OrderedDict()
        # Sessions whose cached state is what this process itself last committed: their loads
        # are served from memory, so a batch costs one round trip (the commit). The process that
        # holds a session's socket is almost always its only writer; a write by anyone else makes
        # the commit's compare-and-set fail, the entry is dropped and the retry reads Redis.
        # Another process that changes the visitor part nudges this one (`invalidate_visitor`)
        # before it re-evaluates, so decisions never rest on a stale visitor part.
        self._own: set[tuple[str, str]] = set()
        self.cache_hits = 0  # loads served without a round trip
        self._vbuf: dict[str, _BufferedVisitor] = {}
        self._sbuf: dict[tuple[str, str], _BufferedSession] = {}
        self._buffered_events = 0
        self._down = False
        self._flushing = False
        self._recovery: asyncio.Task | None = None
        self._forward_vids: set[str] = set()
        self._forward_wakeup = asyncio.Event()
        self._forwarder: asyncio.Task | None = None
        self._closed = False

    # ------------------------------------------------------------------ helpers

    @property
    def degraded(self) -> bool:
        return self._down or self._flushing or bool(self._sbuf) or bool(self._vbuf)

    @property
    def buffered_events(self) -> int:
        return self._buffered_events

    async def _call(self, op: str, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            result = await fn(*args, **kwargs)
        except REDIS_DOWN_ERRORS as exc:
            metrics.REDIS_ERRORS.labels(op).inc()
            self._went_down(exc)
            raise _Down(str(exc)) from exc
        metrics.redis_rtt(op).observe(time.perf_counter() - started)
        return result

    def _script(self, script, keys: list[str], args: list[Any]):
        return run_script(self.pipe, script, keys, args)

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("redis unreachable, buffering writes: %s", exc)
        self._down = True
        # Buffered writes get new versions when they are flushed: after an outage every load
        # reads Redis again until this process's own commits refill `_own`.
        self._own.clear()
        if not self._closed and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    def _remember(self, vid: str, sid: str, v: _CachedVisitor, s: _CachedSession) -> None:
        self._vcache[vid] = v
        self._vcache.move_to_end(vid)
        self._scache[(vid, sid)] = s
        self._scache.move_to_end((vid, sid))
        while len(self._scache) > self.cache_sessions:
            self._own.discard(self._scache.popitem(last=False)[0])
        while len(self._vcache) > self.cache_sessions:
            self._vcache.popitem(last=False)

    def _keys(self, vid: str, sid: str, flush: bool = False) -> list[str]:
        """The keys of COMMIT_LUA, or with `flush` of FLUSH_SESSION_LUA (no visitor key, the
        tombstone before the stream)."""
        keys = [
            *(() if flush else (visitor_key(vid),)),
            session_key(vid, sid),
            sessions_key(vid),
            event_index_key(vid),
            pending_key(vid),
            logged_key(vid, sid),
            *((erased_key(vid),) if flush else ()),
        ]
        if not self.cluster:
            keys.append(self.stream)
        return keys

    # ------------------------------------------------------------------ Store interface

    async def load(self, vid: str, sid: str) -> SessionSnapshot:
        own = (vid, sid) in self._own  # its ids were checked when it was first committed
        if not own:
            check_id(vid, "visitor id")
            check_id(sid, "session id")
        if own and not self.degraded:
            v, s = self._vcache.get(vid), self._scache.get((vid, sid))
            if v is not None and s is not None:
                self.cache_hits += 1
                return self._snapshot(v, s, degraded=False)
            self._own.discard((vid, sid))
        if not self.degraded:
            try:
                raw = await self._call(
                    "load", self._script, self._load, [visitor_key(vid), session_key(vid, sid)], []
                )
            except _Down:
                pass
            else:
                vp, vver, sp, sver, ack, pseq = raw
                v = _CachedVisitor(_bytes(vp), int(vver or 0))
                s = _CachedSession(_bytes(sp), int(sver or 0), int(ack or 0), int(pseq or 0))
                self._remember(vid, sid, v, s)
                return self._snapshot(v, s, degraded=False)
        v = self._vcache.get(vid) or _CachedVisitor(None, 0)
        s = self._scache.get((vid, sid)) or _CachedSession(None, 0, 0, 0)
        return self._snapshot(v, s, degraded=True)

    @staticmethod
    def _snapshot(v: _CachedVisitor, s: _CachedSession, degraded: bool) -> SessionSnapshot:
        profile = None
        if v.profile is not None or s.profile is not None:
            profile = {"v": part_object(v.profile), "s": part_object(s.profile)}
        return SessionSnapshot(
            profile=profile,
            ack=s.ack,
            pseq=s.pseq,
            version=(v.version, s.version),
            extra={"degraded": degraded},
        )

    async def commit(
        self,
        vid: str,
        sid: str,
        snapshot: SessionSnapshot,
        profile: dict[str, Any],
        ack: int,
        pseq: int,
        events: list[dict[str, Any]],
    ) -> bool:
        if (vid, sid) not in self._own:
            check_id(vid, "visitor id")
            check_id(sid, "session id")
        vpart, spart = profile.get("v"), profile.get("s")
        at = int(self._clock() * 1000)
        entry = batch_entry(vid, sid, events, at) if events else None
        if not self.degraded and not snapshot.extra.get("degraded"):
            vjson, sjson = _dump(vpart), _dump(spart)
            # Serialised: the objects need not live across the round trip (the collector would
            # walk them while it lasts); an outage below parses them back for the buffer.
            has_v, has_s = vpart is not None, spart is not None
            profile = vpart = spart = None
            cached = self._scache.get((vid, sid))
            now = time.monotonic()
            refresh = cached is None or now - cached.refreshed >= self.refresh_s
            try:
                res = await self._call(
                    "commit",
                    self._script,
                    self._commit,
                    self._keys(vid, sid),
                    [
                        snapshot.version[0],
                        snapshot.version[1],
                        vjson,
                        sjson,
                        ack,
                        pseq,
                        self.ttl_ms,
                        sid,
                        self._inline,
                        self.stream_maxlen,
                        "1" if refresh else "0",
                        *((entry, max(int(e["seq"]) for e in events)) if entry is not None else ()),
                    ],
                )
            except _Down:
                # The script may or may not have run. Buffering is safe either way: the flush
                # skips events at or below the stored ack and keeps a newer stored profile.
                pass
            else:
                if int(res[0]) == 0:
                    metrics.STORE_CONFLICTS.inc()
                    self._own.discard((vid, sid))  # someone else wrote: the retry reads Redis
                    return False
                self._remember(
                    vid,
                    sid,
                    _CachedVisitor(jsonfast.kept(vjson) if has_v else None, int(res[1])),
                    _CachedSession(
                        jsonfast.kept(sjson) if has_s else None, int(res[2]), ack, pseq,
                        now if refresh else cached.refreshed,  # type: ignore[union-attr]
                    ),
                )
                self._own.add((vid, sid))
                if int(res[3]) > 0:
                    self._schedule_forward(vid)
                return True
            vpart = jsonfast.loads(vjson) if has_v else None
            spart = jsonfast.loads(sjson) if has_s else None
        batch = (max(int(e["seq"]) for e in events), len(events), entry, at) if entry is not None else None
        return self._buffer(vid, sid, snapshot, vpart, spart, ack, pseq, batch)

    def _buffer(self, vid, sid, snapshot, vpart, spart, ack, pseq, batch) -> bool:
        """Degraded commit: compare-and-set against the local cache, then hold the write."""
        cv = self._vcache.get(vid) or _CachedVisitor(None, 0)
        cs = self._scache.get((vid, sid)) or _CachedSession(None, 0, 0, 0)
        if (cv.version, cs.version) != tuple(snapshot.version):
            metrics.STORE_CONFLICTS.inc()
            return False
        n = batch[1] if batch is not None else 0
        if self._buffered_events + n > self.buffer_limit or (
            (vid, sid) not in self._sbuf and len(self._sbuf) >= self.buffer_limit
        ):
            metrics.WRITE_BUFFER_REFUSED.inc()
            raise StoreUnavailable(
                f"redis unavailable and the write buffer is full ({self._buffered_events} events)"
            )
        vb = self._vbuf.get(vid)
        if vb is None:
            self._vbuf[vid] = _BufferedVisitor(cv.version, vpart, int(self._clock() * 1000))
        else:
            vb.profile = vpart
        sb = self._sbuf.get((vid, sid))
        if sb is None:
            sb = self._sbuf[(vid, sid)] = _BufferedSession(cs.version, spart, ack, pseq, int(self._clock() * 1000))
        sb.profile, sb.ack, sb.pseq = spart, ack, pseq
        if batch is not None:
            sb.batches.append(batch)
        self._buffered_events += n
        metrics.WRITE_BUFFER_DEPTH.set(self._buffered_events)
        # Local versions keep two tabs in this process from overwriting each other meanwhile.
        self._remember(
            vid,
            sid,
            _CachedVisitor(part_bytes(vpart), cv.version + 1),
            _CachedSession(part_bytes(spart), cs.version + 1, ack, pseq),
        )
        if not self._down and not self._flushing and not self._closed:
            # Buffered because a flush was pending; make sure one runs.
            if self._recovery is None or self._recovery.done():
                self._recovery = asyncio.get_running_loop().create_task(self._recover())
        return True

    # ------------------------------------------------------------------ recovery

    async def _recover(self) -> None:
        """Probe Redis until it answers, then flush the buffer; the store is ready after."""
        while not self._closed:
            try:
                await self._call("ping", self.client.ping)
            except _Down:
                await asyncio.sleep(self.probe_interval)
                continue
            except Exception:  # noqa: BLE001 - keep probing whatever the client raises
                log.exception("unexpected error while probing redis")
                await asyncio.sleep(self.probe_interval)
                continue
            self._down = False
            try:
                await self._flush()
            except _Down:
                await asyncio.sleep(self.probe_interval)
                continue
            if not self._sbuf and not self._vbuf:
                log.warning("redis reachable again, write buffer flushed")
                return

    async def _flush(self) -> None:
        self._flushing = True
        try:
            while self._vbuf or self._sbuf:
                if self._vbuf:
                    vid, vb = next(iter(self._vbuf.items()))
                    del self._vbuf[vid]
                    try:
                        await self._call(
                            "flush",
                            self._flush_v,
                            keys=[visitor_key(vid), erased_key(vid)],
                            args=[vb.base, _dump(vb.profile), self.ttl_ms, vb.since],
                        )
                    except _Down:
                        newer = self._vbuf.get(vid)
                        self._vbuf[vid] = _BufferedVisitor(vb.base, newer.profile if newer else vb.profile, vb.since)
                        raise
                    continue
                (vid, sid), sb = next(iter(self._sbuf.items()))
                del self._sbuf[(vid, sid)]
                args = [sb.base, _dump(sb.profile), sb.ack, sb.pseq, self.ttl_ms, sid,
                        self._inline, self.stream_maxlen, sb.since]
                for last_seq, _n, entry, at in sb.batches:
                    args += [last_seq, at, entry]
                try:
                    await self._call("flush", self._flush_s, keys=self._keys(vid, sid, flush=True), args=args)
                except _Down:
                    newer = self._sbuf.get((vid, sid))
                    if newer is not None:
                        sb.profile, sb.ack, sb.pseq = newer.profile, newer.ack, newer.pseq
                        sb.batches.extend(newer.batches)
                    self._sbuf[(vid, sid)] = sb
                    raise
                self._buffered_events -= sum(b[1] for b in sb.batches)
                metrics.WRITE_BUFFER_DEPTH.set(self._buffered_events)
                if self.cluster and sb.batches:
                    self._schedule_forward(vid)
                # Versions changed in Redis; the next load must read them, not the cache.
        finally:
            self._flushing = False

    # ------------------------------------------------------------------ cluster forwarder

    def _schedule_forward(self, vid: str) -> None:
        self._forward_vids.add(vid)
        self._forward_wakeup.set()
        if self._forwarder is None or self._forwarder.done():
            self._forwarder = asyncio.get_running_loop().create_task(self._forward_loop())

    async def _forward_loop(self) -> None:
        while not self._closed:
            await self._forward_wakeup.wait()
            self._forward_wakeup.clear()
            while self._forward_vids:
                vid = self._forward_vids.pop()
                try:
                    more = await self.forward_pending(vid)
                except _Down:
                    self._forward_vids.add(vid)
                    await asyncio.sleep(self.probe_interval)
                    continue
                if more:
                    self._forward_vids.add(vid)

    async def forward_pending(self, vid: str, batch: int = 100) -> bool:
        """Move up to `batch` of a visitor's pending batches to the stream; True if more remain.

        At-least-once: if this process dies between XADD and the pending trim, the events are
        forwarded again by the visitor's next commit; records carry (sid, seq) so consumers can
        drop the duplicate.
        """
        raw = await self._call("forward", self.client.lrange, pending_key(vid), 0, batch - 1)
        if not raw:
            return False
        pipe = self.client.pipeline(transaction=False)
        for record in raw:
            pipe.xadd(self.stream, {"b": record}, maxlen=self.stream_maxlen, approximate=True)
        ids = await self._call("forward", pipe.execute)
        kept = await self._call(
            "forward",
            self._forwarded,
            keys=[pending_key(vid), event_index_key(vid)],
            args=[len(raw), raw[0], self.ttl_ms, *ids],
        )
        if not int(kept):
            # Erased (or forwarded by another process) while we were adding: undo ours.
            await self._call("forward", self.client.xdel, self.stream, *ids)
            return False
        return len(raw) == batch

    # ------------------------------------------------------------------ privacy

    async def export_visitor(self, vid: str) -> dict[str, Any]:
        """Profile, sessions, patch outboxes and logged events of a visitor (GDPR export)."""
        check_id(vid, "visitor id")
        prefix = visitor_prefix(vid)
        try:
            vp, sessions, ids, pending = await self._call(
                "export",
                self._export,
                keys=[visitor_key(vid), sessions_key(vid), event_index_key(vid), pending_key(vid)],
                args=[prefix],
            )
        except _Down as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        events = [r for b in pending for r in batch_records(ujson.loads(b))]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            pipe = self.client.pipeline(transaction=False)
            for sid_ in chunk:
                pipe.xrange(self.stream, sid_, sid_)
            found = await self._call("export", pipe.execute)
            for entries in found:
                for _id, fields in entries:
                    events.extend(entry_records(fields))
        events.sort(key=lambda e: (e.get("at", 0), e.get("sid", ""), e.get("seq", 0)))
        return {
            "vid": vid,
            "profile": ujson.loads(vp) if vp else None,
            "sessions": [
                {
                    "sid": sid,
                    "profile": ujson.loads(sp) if sp else None,
                    "ack": int(ack or 0),
                    "pseq": int(pseq or 0),
                    "outbox": [ujson.loads(m) for m in outbox],
                }
                for sid, sp, ack, pseq, outbox in sorted(sessions, key=lambda s: s[0])
            ],
            "events": events,
        }

    async def erase_visitor(self, vid: str) -> None:
        """Delete every key of the visitor and its logged batches in the stream (by id: XDEL).

        Also forgets the visitor in this process's cache and write buffer. Other processes'
        caches are told by the bus (`RedisBus.publish_change("erase", ...)`).
        """
        check_id(vid, "visitor id")
        try:
            ids = await self._call(
                "erase",
                self._erase,
                keys=[
                    visitor_key(vid),
                    sessions_key(vid),
                    event_index_key(vid),
                    pending_key(vid),
                    presence_key(vid),
                    erased_key(vid),
                ],
                args=[visitor_prefix(vid), int(self._clock() * 1000), ERASED_TTL_MS],
            )
            for i in range(0, len(ids), 500):
                await self._call("erase", self.client.xdel, self.stream, *ids[i : i + 500])
        except _Down as exc:
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc
        self.forget_visitor(vid)

    def invalidate_visitor(self, vid: str) -> None:
        """Another process wrote this visitor: the next loads of its sessions read Redis."""
        self._own = {k for k in self._own if k[0] != vid}

    def forget_visitor(self, vid: str) -> None:
        """Drop a visitor from this process's cache and write buffer (after an erasure)."""
        self.invalidate_visitor(vid)
        self._vcache.pop(vid, None)
        self._vbuf.pop(vid, None)
        self._forward_vids.discard(vid)
        for key in [k for k in self._scache if k[0] == vid]:
            del self._scache[key]
        for key in [k for k in self._sbuf if k[0] == vid]:
            self._buffered_events -= sum(b[1] for b in self._sbuf.pop(key).batches)
        metrics.WRITE_BUFFER_DEPTH.set(self._buffered_events)

    # ------------------------------------------------------------------ lifecycle

    async def ready(self) -> bool:
        if self.degraded:
            return False
        try:
            await self._call("ping", self.client.ping)
        except _Down:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush buffered writes and forward pending events (within `timeout`), then disconnect."""
        deadline = time.monotonic() + timeout
        while (self._sbuf or self._vbuf or self._forward_vids) and time.monotonic() < deadline:
            if self._recovery is not None and not self._recovery.done():
                await asyncio.sleep(0.05)
                continue
            try:
                if self._sbuf or self._vbuf:
                    await self._flush()
                while self._forward_vids:
                    vid = next(iter(self._forward_vids))
                    if not await self.forward_pending(vid):
                        self._forward_vids.discard(vid)
            except _Down:
                await asyncio.sleep(self.probe_interval)
        if self._sbuf:
            log.error("closing with %d events still buffered: redis unreachable", self._buffered_events)
        self._closed = True
        for task in (self._recovery, self._forwarder):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        self._forward_wakeup.set()
        if self.pipe is not None:
            await self.pipe.close()
        await self.client.aclose()
