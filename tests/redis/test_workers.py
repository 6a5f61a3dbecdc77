"""`microadjust serve --workers 2 --redis URL`: two processes on one port (SO_REUSEPORT), each a full
peer; connections land on both, patches reach the visitor whichever worker holds the socket,
`/metrics` sums the workers, and SIGTERM to the parent drains them all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect


ROOT = Path(__file__).resolve().parents[2]
DEMO_RULES = ROOT / "server" / "microadjust" / "demo" / "rules.json"
ORIGIN = "http://page.test"
TS = 1_732_262_400_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hello(vid: str, sid: str, pseq: int = 0) -> str:
    return json.dumps({"t": "hello", "v": 1, "site": "demo", "vid": vid, "sid": sid, "consent": "granted",
                       "page": {"url": "/shop", "title": "Shop", "vw": 1280, "vh": 800}, "ack": 0, "pseq": pseq})


async def recv_until(ws, t: str, timeout: float = 5.0) -> dict:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg["t"] == t:
            return msg


class Workers:
    def __init__(self, redis_url: str, tmp_path: Path, n: int = 2) -> None:
        self.port = free_port()
        self.metrics_dir = tmp_path / "metrics"
        self.log = open(tmp_path / "workers.log", "w+")
        env = {**os.environ, "MICROADJUST_REDIS_URL": redis_url, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "microadjust", "serve", "--workers", str(n), "--port", str(self.port),
             "--site", f"demo={ORIGIN}", "--rules", str(DEMO_RULES), "--data-dir", str(tmp_path / "data"),
             "--drain-timeout", "5", "--log-format", "json"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        # Ready when both workers answer (each /healthz names its pid; new connection each time).
        self.pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(self.pids) < n:
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"workers did not start: {self.pids}\n{self.text()}"
            try:
                with httpx.Client() as http:  # one connection per request: SO_REUSEPORT picks a worker
                    self.pids.add(http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1,
                                           headers={"connection": "close"}).json()["pid"])
            except httpx.HTTPError:
                time.sleep(0.1)

    def ws(self):
        return ws_connect(f"ws://127.0.0.1:{self.port}/v1/stream?site=demo&v=1", origin=ORIGIN,
                          compression=None, open_timeout=5)

    def text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture
def workers(redis_server, tmp_path):
    w = Workers(redis_server.url, tmp_path)
    yield w
    w.stop()


async def test_two_workers_share_the_port_and_the_visitor_gets_patches_on_either(workers):
    tabs, landed = [], {}
    for i in range(24):
        ws = await workers.ws()
        pid = int(ws.response.headers["x-microadjust-worker"])
        await ws.send(hello(f"v_worker_{i:04d}", f"s_worker_{i:04d}"))
        await recv_until(ws, "welcome")
        tabs.append(ws)
        landed.setdefault(pid, []).append(i)
    assert set(landed) == workers.pids  # connections landed on both workers
    # /metrics on either worker sums both: 24 open sockets.
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"http://127.0.0.1:{workers.port}/metrics")).text
    assert "microadjust_connections 24.0" in body
    # A hover on one tab per worker: each gets its patch from its own worker.
    for pid, indexes in landed.items():
        ws = tabs[indexes[0]]
        await ws.send(json.dumps({"t": "events", "seq": 1, "events": [
            {"k": "hover", "ts": TS, "item": "p1", "dur": 2500, "phase": "intent"}]}))
        patch = await recv_until(ws, "patch")
        assert patch["patch"]["target"] == {"item": "p1"}
    # A duplicated tab (same session) on the other worker sees a patch decided on the first.
    (pid_a, on_a), (pid_b, on_b) = sorted(landed.items())[:2]
    first = tabs[on_a[1]]
    vid, sid = f"v_worker_{on_a[1]:04d}", f"s_worker_{on_a[1]:04d}"
    while True:  # open sockets until one lands on the other worker
        twin = await workers.ws()
        if int(twin.response.headers["x-microadjust-worker"]) == pid_b:
            break
        await twin.close()
    await twin.send(hello(vid, sid))
    await recv_until(twin, "welcome")
    await asyncio.sleep(0.3)  # presence in place
    await first.send(json.dumps({"t": "events", "seq": 1, "events": [
        {"k": "hover", "ts": TS, "item": "p3", "dur": 2500, "phase": "intent"}]}))
    local = await recv_until(first, "patch")
    assert await recv_until(twin, "patch") == local
    tabs.append(twin)

    # SIGTERM to the parent drains every worker: each socket is closed with 4010.
    started = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)

    async def close_code(ws):
        await asyncio.wait_for(ws.wait_closed(), 8)
        return ws.close_code, ws.close_reason

    closes = await asyncio.gather(*(close_code(ws) for ws in tabs))
    assert set(closes) == {(4010, "draining")}
    code = await asyncio.get_running_loop().run_in_executor(None, workers.proc.wait, 15)
    assert code == 0 and time.monotonic() - started < 10
    for pid in workers.pids:  # no worker left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    records = [json.loads(line) for line in workers.text().splitlines() if line.startswith("{")]
    assert {r["pid"] for r in records if r["msg"] == "drained"} == workers.pids


def connections(workers) -> float:
    body = httpx.get(f"http://127.0.0.1:{workers.port}/metrics", headers={"connection": "close"}).text
    return float(next(line.split()[1] for line in body.splitlines() if line.startswith("microadjust_connections ")))


async def test_a_crashed_worker_is_replaced_and_its_connections_stop_counting(workers):
    victim = sorted(workers.pids)[0]
    while True:  # a socket held by the victim
        ws = await workers.ws()
        if int(ws.response.headers["x-microadjust-worker"]) == victim:
            break
        await ws.close()
    await ws.send(hello("v_victim_0001", "s_victim_0001"))
    await recv_until(ws, "welcome")
    assert connections(workers) == 1.0
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    seen: set[int] = set()
    while len(seen - {victim}) < 2:
        assert time.monotonic() < deadline, f"no replacement worker: {seen}\n{workers.text()}"
        try:
            with httpx.Client() as http:
                seen.add(http.get(f"http://127.0.0.1:{workers.port}/healthz", timeout=1,
                                  headers={"connection": "close"}).json()["pid"])
        except httpx.HTTPError:
            time.sleep(0.1)
    assert victim not in seen
    workers.pids = seen
    assert "exited with status -9; restarting it" in workers.text()
    assert connections(workers) == 0.0  # the dead worker's live gauge was dropped


def test_more_than_one_worker_without_redis_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MICROADJUST_REDIS_URL"}
    r = subprocess.run([sys.executable, "-m", "microadjust", "serve", "--workers", "2", "--site", f"demo={ORIGIN}",
                        "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "--workers 2 needs --redis URL" in r.stderr


def test_a_port_in_use_is_reported_before_any_worker_starts(redis_server, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "microadjust", "serve", "--workers", "2", "--port", str(port),
                            "--site", f"demo={ORIGIN}", "--redis", redis_server.url, "--data-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in r.stderr
