"""Fixtures: each test module gets its own `redis-server` (and a 3-node cluster) on free ports.

The tests start Redis themselves so they can kill and restart it; they never touch the Redis an
operator may run on 6379. Persistence is off (`--save "" --appendonly no`) and every server
lives in a temporary directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server / redis-cli not installed (the test command installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, fixed by Redis) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a redis cluster node")


class RedisProcess:
    """One `redis-server` owned by the test: start, kill -9, restart on the same port."""

    def __init__(self, tmp_path, port: int | None = None, cluster: bool = False) -> None:
        self.port = port or (free_cluster_port() if cluster else free_port())
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisProcess":
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
        ]
        if self.cluster:
            # A fresh nodes file per start: a killed node restarts as a new, empty node.
            conf = self.dir / "nodes.conf"
            if conf.exists():
                conf.unlink()
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(conf),
                     "--cluster-node-timeout", "2000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        self.kill()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisProcess(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """Three masters, no replicas, joined with `redis-cli --cluster create`."""
    tmp = tmp_path_factory.mktemp("cluster")
    nodes = [RedisProcess(tmp, cluster=True).start() for _ in range(3)]
    try:
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run([REDIS_CLI, "-p", str(nodes[0].port), "cluster", "info"],
                                 capture_output=True, text=True, timeout=10).stdout
            if "cluster_state:ok" in out:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("redis cluster did not reach cluster_state:ok")
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def cluster_url(nodes) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)


@pytest.fixture(params=["single", "cluster"])
def redis_url(request, tmp_path):
    """The same test against one redis-server and against a 3-node cluster."""
    if request.param == "single":
        server = RedisProcess(tmp_path).start()
        yield server.url
        server.stop()
    else:
        nodes = request.getfixturevalue("redis_cluster")
        url = cluster_url(nodes)
        yield url
        for n in nodes:
            subprocess.run([REDIS_CLI, "-p", str(n.port), "flushall"], capture_output=True, timeout=10)


@pytest.fixture
def stopped_redis(tmp_path):
    """A redis-server with a free port that the test starts itself (Redis down at first)."""
    server = RedisProcess(tmp_path)
    yield server
    server.stop()
