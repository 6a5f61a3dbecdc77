"""Two real server processes (`microadjust serve --redis URL`) sharing one test Redis, driven by
real WebSocket clients: two tabs of one visitor on two processes, cross-process delivery and
resume on another process. No sticky sessions anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[2]
DEMO_RULES = ROOT / "server" / "microadjust" / "demo" / "rules.json"
ORIGIN = "http://page.test"
TS = 1_732_262_400_000
VID = "v_two_process"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every click on an item marks it: one patch per click, no cap, no cooldown.
CLICK_RULES = {
    "version": 1,
    "settings": {"max_adjustments": 1000, "cooldown_ms": 0},
    "rules": [{"id": "click-mark", "on": ["click"], "when": {"!!": [{"var": "event.item"}]}, "cooldown": 0,
               "target": {"item": "{{event.item}}"}, "ops": [{"op": "addClass", "class": "ma-clicked"}], "ttl": 0}],
}
TOKEN = "test-admin-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ServerProcess:
    def __init__(self, redis_url: str, tmp_path: Path, name: str, rules: Path = DEMO_RULES) -> None:
        self.port = free_port()
        self.log = open(tmp_path / f"{name}.log", "w")
        env = {**os.environ, "MICROADJUST_REDIS_URL": redis_url, "MICROADJUST_ADMIN_TOKEN": TOKEN}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "microadjust", "serve", "--port", str(self.port),
             "--site", f"demo={ORIGIN}", "--rules", str(rules),
             "--data-dir", str(tmp_path / name), "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (tmp_path / f"{name}.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server {name} did not start")

    def ws(self):
        return ws_connect(f"ws://127.0.0.1:{self.port}/v1/stream?site=demo&v=1", origin=ORIGIN,
                          compression=None, open_timeout=5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def two_servers(redis_server, tmp_path):
    a = ServerProcess(redis_server.url, tmp_path, "a")
    b = ServerProcess(redis_server.url, tmp_path, "b")
    yield a, b
    a.stop()
    b.stop()


def hello(sid: str, pseq: int = 0) -> str:
    return json.dumps({"t": "hello", "v": 1, "site": "demo", "vid": VID, "sid": sid,
                       "consent": "granted", "page": {"url": "/shop", "title": "Shop", "vw": 1280, "vh": 800},
                       "ack": 0, "pseq": pseq})


def hover(seq: int, item: str) -> str:
    return json.dumps({"t": "events", "seq": seq, "events": [
        {"k": "hover", "ts": TS, "item": item, "dur": 2500, "phase": "intent"}]})


async def recv_until(ws, t: str, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
        if msg["t"] == t:
            return msg


async def patches_within(ws, seconds: float) -> list[dict]:
    out = []
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), seconds))
            if msg["t"] == "patch":
                out.append(msg)
    except asyncio.TimeoutError:
        return out


async def test_two_tabs_on_two_processes_get_one_patch_each(two_servers):
    a, b = two_servers
    async with a.ws() as tab_a, b.ws() as tab_b:
        await tab_a.send(hello("s_tab_a_0001"))
        await tab_b.send(hello("s_tab_b_0001"))
        await recv_until(tab_a, "welcome")
        await recv_until(tab_b, "welcome")
        await tab_a.send(hover(1, "p1"))
        await tab_b.send(hover(1, "p2"))
        assert (await recv_until(tab_a, "ack"))["seq"] == 1
        assert (await recv_until(tab_b, "ack"))["seq"] == 1
        got_a = [await recv_until(tab_a, "patch")] + await patches_within(tab_a, 0.5)
        got_b = [await recv_until(tab_b, "patch")] + await patches_within(tab_b, 0.5)
    hover_a = [m for m in got_a if m["patch"]["target"] == {"item": "p1"}]
    hover_b = [m for m in got_b if m["patch"]["target"] == {"item": "p2"}]
    assert len(hover_a) == 1 and len(hover_b) == 1
    # Each tab got its own patch, numbered in its own session (§5), not the other tab's.
    assert not [m for m in got_a if m["patch"]["target"] == {"item": "p2"}]
    assert hover_a[0]["pseq"] == 1 and hover_b[0]["pseq"] == 1


async def test_a_patch_reaches_the_same_session_on_the_other_process(two_servers):
    """A duplicated tab (same session id) on process b sees what process a decided."""
    a, b = two_servers
    sid = "s_duplicated1"
    async with a.ws() as first, b.ws() as second:
        await first.send(hello(sid))
        await second.send(hello(sid))
        await recv_until(first, "welcome")
        await recv_until(second, "welcome")
        await asyncio.sleep(0.2)  # presence and the bus subscription are in place
        await first.send(hover(1, "p3"))
        local = await recv_until(first, "patch")
        remote = await recv_until(second, "patch")
    assert remote == local


async def test_a_reconnect_to_the_other_process_gets_the_missed_patch(two_servers):
    a, b = two_servers
    sid = "s_reconnects1"
    async with a.ws() as tab:
        await tab.send(hello(sid))
        await recv_until(tab, "welcome")
        await tab.send(hover(1, "p4"))
        missed = await recv_until(tab, "patch")  # sent, but say the page never applied it
    async with b.ws() as tab:
        await tab.send(hello(sid, pseq=0))
        welcome = await recv_until(tab, "welcome")
        assert welcome["ack"] == 1  # the event is not resent either
        # §2.3 on the wire: what follows welcome, and that it is everything.
        assert welcome["pseq"] == missed["pseq"]
        assert welcome["resume"] == {"from": 0, "sent": 1, "complete": True}
        replayed = json.loads(await tab.recv())  # right after welcome
    assert replayed == missed


async def test_a_reconnect_with_nothing_missed_replays_nothing(two_servers):
    a, b = two_servers
    sid = "s_uptodate01"
    async with a.ws() as tab:
        await tab.send(hello(sid))
        await recv_until(tab, "welcome")
        await tab.send(hover(1, "p5"))
        seen = await recv_until(tab, "patch")
    async with b.ws() as tab:
        await tab.send(hello(sid, pseq=seen["pseq"]))
        welcome = await recv_until(tab, "welcome")
        assert welcome["pseq"] == seen["pseq"] and "resume" not in welcome
        assert await patches_within(tab, 0.5) == []


def clicks(seq: int, n: int) -> str:
    return json.dumps({"t": "events", "seq": seq, "events": [
        {"k": "click", "ts": TS + i, "item": f"p{seq + i}"} for i in range(n)]})


async def test_a_reconnect_after_more_patches_than_the_outbox_holds_is_incomplete(redis_server, tmp_path):
    rules = tmp_path / "click-rules.json"
    rules.write_text(json.dumps(CLICK_RULES))
    a = ServerProcess(redis_server.url, tmp_path, "a", rules)
    b = ServerProcess(redis_server.url, tmp_path, "b", rules)
    sid = "s_many_patches"
    try:
        async with a.ws() as tab:
            await tab.send(hello(sid))
            await recv_until(tab, "welcome")
            await tab.send(clicks(1, 100))
            await tab.send(clicks(101, 30))
            sent = [await recv_until(tab, "patch") for _ in range(130)]
        async with b.ws() as tab:
            await tab.send(hello(sid, pseq=10))
            welcome = await recv_until(tab, "welcome")
            assert welcome["pseq"] == 130
            assert welcome["resume"] == {"from": 10, "sent": 64, "complete": False}
            replayed = [json.loads(await tab.recv()) for _ in range(64)]
        assert replayed == sent[66:]
    finally:
        a.stop()
        b.stop()


async def test_a_client_ahead_of_an_erased_session_resumes_incomplete_on_any_process(two_servers):
    _, b = two_servers
    async with b.ws() as tab:
        await tab.send(hello("s_erased_0001", pseq=5))
        welcome = await recv_until(tab, "welcome")
        assert welcome["pseq"] == 5 and welcome["resume"] == {"from": 5, "sent": 0, "complete": False}
        await tab.send(hover(1, "p8"))
        assert (await recv_until(tab, "patch"))["pseq"] == 6


async def test_a_beacon_to_one_process_reaches_the_socket_on_the_other(two_servers):
    import httpx

    a, b = two_servers
    sid = "s_beacon_0001"
    async with a.ws() as tab:
        await tab.send(hello(sid))
        await recv_until(tab, "welcome")
        await asyncio.sleep(0.2)  # presence in place
        body = {"site": "demo", "vid": VID, "sid": sid, "seq": 1, "events": [
            {"k": "hover", "ts": TS, "item": "p9", "dur": 2500, "phase": "intent"}]}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"http://127.0.0.1:{b.port}/v1/events", content=json.dumps(body),
                                headers={"origin": ORIGIN, "content-type": "text/plain;charset=UTF-8"})
        assert r.json() == {"ack": 1}
        patch = await recv_until(tab, "patch")
        assert patch["patch"]["target"] == {"item": "p9"} and patch["pseq"] == 1
    # And it is in the session's outbox in Redis for a later resume.
    async with b.ws() as tab:
        await tab.send(hello(sid, pseq=0))
        assert (await recv_until(tab, "welcome"))["resume"] == {"from": 0, "sent": 1, "complete": True}


async def test_a_rule_added_through_one_process_is_live_on_the_other_within_a_second(two_servers):
    import httpx

    a, b = two_servers
    rule = {"id": "cta-pulse", "on": ["click"], "when": {"==": [{"var": "event.item"}, "p2"]},
            "target": {"slot": "cta"}, "ops": [{"op": "addClass", "class": "ma-pulse"}], "ttl": 5000}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"http://127.0.0.1:{a.port}/v1/admin/rules", headers=AUTH, json=rule)
        assert r.status_code == 201
        started = time.monotonic()
        while True:
            seen = (await http.get(f"http://127.0.0.1:{b.port}/v1/admin/rules/cta-pulse", headers=AUTH))
            if seen.status_code == 200:
                break
            assert time.monotonic() - started < 1.0, "the rule did not reach process b within a second"
            await asyncio.sleep(0.05)
        assert seen.json() == rule
    # And process b decides with it.
    async with b.ws() as tab:
        await tab.send(hello("s_new_rule_01"))
        await recv_until(tab, "welcome")
        await tab.send(json.dumps({"t": "events", "seq": 1, "events": [{"k": "click", "ts": TS, "item": "p2"}]}))
        patch = await recv_until(tab, "patch")
        assert patch["patch"]["rule"] == "cta-pulse"
    # A deletion through b reaches a the same way.
    async with httpx.AsyncClient() as http:
        r = await http.delete(f"http://127.0.0.1:{b.port}/v1/admin/rules/cta-pulse", headers=AUTH)
        assert r.status_code == 200
        await asyncio.sleep(1.2)
        assert (await http.get(f"http://127.0.0.1:{a.port}/v1/admin/rules/cta-pulse", headers=AUTH)).status_code == 404


async def test_metrics_endpoint_reports_the_process_figures(two_servers):
    import httpx

    a, _ = two_servers
    async with a.ws() as tab:
        await tab.send(hello("s_metrics_001"))
        await recv_until(tab, "welcome")
        await tab.send(hover(1, "p6"))
        await recv_until(tab, "ack")
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"http://127.0.0.1:{a.port}/metrics")).text
    assert "microadjust_connections 1.0" in body
    assert 'microadjust_events_total{kind="hover"} 1.0' in body
    assert 'microadjust_redis_rtt_seconds_count{op="commit"}' in body


async def test_export_and_erasure_through_the_admin_api_across_processes(redis_server, tmp_path):
    import httpx

    a = ServerProcess(redis_server.url, tmp_path, "a")
    b = ServerProcess(redis_server.url, tmp_path, "b")
    auth = AUTH
    try:
        async with a.ws() as tab, httpx.AsyncClient() as http:
            await tab.send(hello("s_erase_00001"))
            await recv_until(tab, "welcome")
            await tab.send(hover(1, "p7"))
            await recv_until(tab, "ack")
            url_b = f"http://127.0.0.1:{b.port}/v1/visitors/{VID}"
            assert (await http.get(url_b)).status_code == 401
            exported = (await http.get(url_b, headers=auth)).json()
            assert exported["events"][0]["item"] == "p7"
            assert exported["sessions"][0]["sid"] == "s_erase_00001"
            # Erased through process b; the tab connected to process a is closed too.
            assert (await http.delete(url_b, headers=auth)).status_code == 204
            await asyncio.wait_for(tab.wait_closed(), 3)
            again = (await http.get(f"http://127.0.0.1:{a.port}/v1/visitors/{VID}", headers=auth)).json()
            assert again["profile"] is None and again["sessions"] == [] and again["events"] == []
    finally:
        a.stop()
        b.stop()
