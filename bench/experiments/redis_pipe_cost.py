"""redis-py vs the auto-pipelined connection (`microadjust.redis_pipe`) on the commit script.

N coroutines each run the store's commit script (two ~1 KB profile parts, 10 event records)
back to back against a private redis-server pinned to core 0 with this process (run it under
`taskset -c 0`), alternating redis-py and the pipeline twice. Prints commits/s, this process's
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

import redis.asyncio as aioredis  # noqa: E402

from microadjust.redis_pipe import AutoPipeline  # noqa: E402
from microadjust.store.redis import COMMIT_LUA  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(kind: str, port: int, redis_pid: int, n: int, per: int) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    script = client.register_script(COMMIT_LUA)
    pipe = AutoPipeline.for_client(client, 1.0)
    part = "x" * 1000
    record = '{"vid":"v_bench","sid":"s_bench","at":1700000000000,"k":"hover","seq":1}'

    async def worker(i: int) -> None:
        ver = [0, 0]
        keys = [f"ma:{{v{i}}}:v", f"ma:{{v{i}}}:s:s", f"ma:{{v{i}}}:ss", f"ma:{{v{i}}}:ev",
                f"ma:{{v{i}}}:pend", "bench:events"]
        for j in range(per):
            args = [ver[0], ver[1], part, part, j, 0, 100_000, "s", "1", 10_000, *[record] * 10]
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
    extra = f", {pipe.writes} writes for {pipe.commands} commands" if kind == "pipeline" else ""
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
        for kind in ("redis-py", "pipeline", "redis-py", "pipeline"):
            await run(kind, port, redis.pid, opts.coroutines, opts.commits)
    finally:
        redis.terminate()


asyncio.run(main())
