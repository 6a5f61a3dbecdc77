"""The commit script's cost: redis-py vs the auto-pipelined connection (`microadjust.redis_pipe`),
and one stream entry per batch vs the earlier one entry per event.

N coroutines each run a commit script (two ~1 KB profile parts, a batch of 10 events) back to
back against a private redis-server pinned to core 0 with this process (run it under
`taskset -c 0`), two rounds of: redis-py with the store's script, the pipeline with it, and the
pipeline with the previous script (`per-event`: an `XADD` and index entry per event and every
TTL refreshed on every batch; kept here for the comparison). Prints commits/s, this process's
CPU per commit and Redis's CPU per commit.

    taskset -c 0 .venv/bin/python bench/experiments/redis_pipe_cost.py [--coroutines 90]

90 coroutines: redis-py's default asyncio pool refuses more than 100 commands in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "server"))

import orjson  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from microadjust.redis_pipe import AutoPipeline  # noqa: E402
from microadjust.store.redis import COMMIT_LUA, batch_entry, event_record  # noqa: E402

# The commit script before one stream entry per batch (ARGV 11..: one record per event).
PER_EVENT_COMMIT_LUA = """
local vver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
local sver = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
if vver ~= tonumber(ARGV[1]) or sver ~= tonumber(ARGV[2]) then
  return {0, vver, sver}
end
local ttl = ARGV[7]
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'ver', vver + 1)
redis.call('HSET', KEYS[2], 'p', ARGV[4], 'ver', sver + 1, 'ack', ARGV[5], 'pseq', ARGV[6])
redis.call('SADD', KEYS[3], ARGV[8])
local pending = 0
if #ARGV > 10 then
  if ARGV[9] == '1' then
    local ids = {}
    for i = 11, #ARGV do
      ids[#ids + 1] = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'e', ARGV[i])
    end
    redis.call('RPUSH', KEYS[4], unpack(ids))
  else
    pending = redis.call('RPUSH', KEYS[5], unpack(ARGV, 11))
    redis.call('PEXPIRE', KEYS[5], ttl)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
if pending == 0 and ARGV[9] == '0' then pending = redis.call('LLEN', KEYS[5]) end
return {1, vver + 1, sver + 1, pending}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(kind: str, port: int, redis_pid: int, n: int, per: int) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    script = client.register_script(PER_EVENT_COMMIT_LUA if kind == "per-event" else COMMIT_LUA)
    pipe = AutoPipeline.for_client(client, 1.0)
    part = "x" * 1000
    evs = [{"k": "hover", "ts": 1700000000000 + i, "seq": i + 1, "item": f"p-{i}", "dur": 640}
           for i in range(10)]
    records = [orjson.dumps(event_record("v_bench", "s_bench", e, 1700000000000)) for e in evs]
    entry = batch_entry("v_bench", "s_bench", evs, 1700000000000)

    async def worker(i: int) -> None:
        ver = [0, 0]
        keys = [f"ma:{{v{i}}}:v", f"ma:{{v{i}}}:s:s", f"ma:{{v{i}}}:ss", f"ma:{{v{i}}}:ev",
                f"ma:{{v{i}}}:pend", "bench:events"]
        for j in range(per):
            args = [ver[0], ver[1], part, part, j, 0, 100_000, "s", "1", 10_000]
            if kind == "per-event":
                args += records
            else:
                args += ["1" if j == 0 else "0", entry]  # TTL refresh due on the first commit
            if kind == "redis-py":
                res = await script(keys=keys, args=args)
            else:
                res = await pipe.eval_script(script, keys, args)
            ver = [res[1], res[2]]

    await client.flushall()
    cpu0, wall0, r0 = time.process_time(), time.perf_counter(), proc_cpu(redis_pid)
    await asyncio.gather(*(worker(i) for i in range(n)))
    wall, cpu, rcpu = time.perf_counter() - wall0, time.process_time() - cpu0, proc_cpu(redis_pid) - r0
    total = n * per
    extra = f", {pipe.writes} writes for {pipe.commands} commands" if kind != "redis-py" else ""
    print(f"{kind:9s} {total / wall:7.0f} commits/s  client CPU {cpu * 1e6 / total:5.0f} us/commit  "
          f"redis CPU {rcpu * 1e6 / total:5.0f} us/commit{extra}")
    await pipe.close()
    await client.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coroutines", type=int, default=90)
    ap.add_argument("--commits", type=int, default=200, help="per coroutine")
    opts = ap.parse_args()
    port = free_port()
    redis = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        for kind in ("redis-py", "pipeline", "per-event") * 2:
            await run(kind, port, redis.pid, opts.coroutines, opts.commits)
    finally:
        redis.terminate()


asyncio.run(main())
