"""Helpers for the server tests: settings for a test server, a protocol client, close codes."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from microadjust.settings import Limits, Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO_RULES = ROOT / "server" / "microadjust" / "demo" / "rules.json"
TOKEN = "test-admin-token-123"
TS = 1_732_262_400_000


def make_settings(tmp_path, rules_file=None, **limits) -> Settings:
    """Site `demo` allowed from http://page.test; admin token TOKEN; port chosen by live_server."""
    return Settings(
        port=0,
        sites={"demo": ["http://page.test"], "other": ["http://other.test"]},
        admin_token=TOKEN,
        rules_file=rules_file,
        rules_poll_s=0.1,
        data_dir=tmp_path / "data",
        limits=Limits(**limits),
    )


def ids() -> tuple[str, str]:
    return "v_" + secrets.token_hex(6), "s_" + secrets.token_hex(6)


def hello(vid: str, sid: str, **kw) -> dict:
    msg = {"t": "hello", "v": 1, "site": "demo", "vid": vid, "sid": sid, "consent": "granted",
           "page": {"url": "/shop", "title": "Shop", "vw": 1280, "vh": 800}, "ack": 0, "pseq": 0}
    msg.update(kw)
    return msg


def hover(item: str = "p1", dur: int = 2500, phase: str = "intent") -> dict:
    return {"k": "hover", "ts": TS, "item": item, "dur": dur, "phase": phase}


def connect(url: str, path: str = "/v1/stream?site=demo&v=1", origin: str | None = "http://page.test", **kw):
    return ws_connect(url.ws(path), origin=origin, max_size=None, compression=None, open_timeout=5, **kw)


async def recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send(ws, msg) -> None:
    await ws.send(msg if isinstance(msg, str) else json.dumps(msg))


async def open_session(url: str, vid: str, sid: str, **hello_kw):
    """Connect, say hello, return (ws, welcome)."""
    ws = await connect(url)
    await send(ws, hello(vid, sid, **hello_kw))
    welcome = await recv(ws)
    assert welcome["t"] == "welcome", welcome
    return ws, welcome


async def closed_with(ws, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; returns the close code and reason it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame from the server"
        return exc.rcvd.code, exc.rcvd.reason


async def until(ws, t: str, timeout: float = 5.0) -> dict:
    """The next message of type `t`, skipping others."""
    while True:
        msg = await recv(ws, timeout)
        if msg["t"] == t:
            return msg
