"""Graceful drain on SIGTERM (docs/SCALING.md "Drain", PROTOCOL §7 4010) of a real `microadjust serve`
process, with real WebSocket clients; its logs are one JSON object per line (docs/SERVER.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from .helpers import DEMO_RULES, closed_with, hello, hover, ids, make_settings, recv, send

ORIGIN = "http://page.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`python -m microadjust serve` in its own process, stderr captured for its JSON logs."""

    def __init__(self, tmp_path, *extra: str) -> None:
        self.port = free_port()
        self.data = tmp_path / "data"
        self.stderr = open(tmp_path / "serve.log", "w+")
        env = {k: v for k, v in os.environ.items() if k not in ("MICROADJUST_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "microadjust", "serve", "--port", str(self.port), "--site", f"demo={ORIGIN}",
             "--rules", str(DEMO_RULES), "--data-dir", str(self.data), "--log-format", "json", *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=self.stderr,
        )
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, self.log_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def ws(self):
        return ws_connect(f"ws://127.0.0.1:{self.port}/v1/stream?site=demo&v=1", origin=ORIGIN,
                          compression=None, open_timeout=5)

    def log_text(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stderr.close()


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*extra):
        started.append(Serve(tmp_path, *extra))
        return started[-1]

    yield start
    for s in started:
        s.stop()


async def test_sigterm_closes_every_socket_with_4010_flushes_and_exits_within_the_bound(serve):
    server = serve("--drain-timeout", "5")
    tabs = []
    for _ in range(3):
        ws = await server.ws()
        vid, sid = ids()
        await send(ws, hello(vid, sid))
        assert (await recv(ws))["t"] == "welcome"
        await send(ws, {"t": "events", "seq": 1, "events": [hover("p1")]})
        assert await recv(ws) == {"t": "ack", "seq": 1}
        tabs.append(ws)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    closes = await asyncio.gather(*(closed_with(ws) for ws in tabs))
    assert closes == [(4010, "draining")] * 3
    code = await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 10)
    elapsed = time.monotonic() - started
    assert code == 0 and elapsed < 5, (code, elapsed)
    # Nothing accepted was lost: the three acked events are in the event log.
    lines = (server.data / "events.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["item"] == "p1" for line in lines)
    # And no new connection is accepted any more.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    # Every log line is one JSON object with the documented fields; the drain is in them.
    records = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    assert records and all({"ts", "level", "msg", "logger", "pid"} <= r.keys() for r in records)
    messages = [r["msg"] for r in records]
    assert any(m.startswith("draining") for m in messages) and "drained" in messages


async def test_json_logs_carry_the_visitor_and_session_of_a_socket(serve):
    server = serve("--log-level", "debug")
    vid, sid = ids()
    async with server.ws() as ws:
        await send(ws, hello(vid, sid, pseq=3))  # ahead of the server: logged with vid and sid
        welcome = await recv(ws)
        assert welcome["resume"] == {"from": 3, "sent": 0, "complete": False}
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(10)
    records = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    mine = [r for r in records if r.get("sid") == sid]
    assert mine and all(r["vid"] == vid for r in mine)
    assert any("claims pseq 3" in r["msg"] for r in mine)


async def test_readyz_turns_red_and_upgrades_are_refused_once_a_drain_begins(live_server, tmp_path):
    url = live_server(make_settings(tmp_path))
    assert httpx.get(url + "/readyz").status_code == 200
    url.app.state.gateway.begin_drain(5)
    r = httpx.get(url + "/readyz")
    assert r.status_code == 503 and r.json()["detail"] == "shutting down"
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url.ws(), origin=ORIGIN, open_timeout=5):
            pass
    assert refused.value.response.status_code == 503


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999"])
def test_a_bad_drain_timeout_is_refused_with_a_clear_message(value, capsys):
    from microadjust.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--site", f"demo={ORIGIN}", "--drain-timeout", value])
    assert exited.value.code == 2
    assert "--drain-timeout" in capsys.readouterr().err
