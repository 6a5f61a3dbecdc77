"""The Python peer: a minimal Starlette WebSocket endpoint, run on uvicorn with default settings.

It is what a FastAPI/Starlette team gets without tuning: uvicorn's default WebSocket
implementation (`--ws auto`, which in uvicorn 0.54 is `websockets-sansio` when websockets is installed), uvicorn's default
permessage-deflate (on, negotiated when the client offers it, as browsers do), the standard
library's json, and no gc tuning. The per-message work is bench/peers/floor_logic.py, the same
logic as the Node floor.

    .venv/bin/uvicorn --app-dir bench/peers starlette_peer:app --host 127.0.0.1 --port 9103
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from floor_logic import Close, FloorSession

SITE = "demo"
PORT = os.environ.get("PEER_PORT", "")  # the origin allow-list needs the served port


def _origin_ok(origin: str | None) -> bool:
    if not origin:
        return False
    host, _, port = origin.removeprefix("http://").partition(":")
    return host in ("127.0.0.1", "localhost") and (not PORT or port == PORT)


async def stream(ws: WebSocket) -> None:
    # PROTOCOL §2.1: site and Origin are checked before the upgrade is accepted (403 otherwise).
    if ws.query_params.get("site") != SITE or not _origin_ok(ws.headers.get("origin")):
        await ws.close(code=1008)
        return
    await ws.accept()
    v = ws.query_params.get("v")
    if v is not None and v != "1":
        await ws.close(4001, f"unsupported protocol version {v[:16]}; server speaks 1")
        return
    session = FloorSession(SITE)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await ws.close(1003, "binary frames not supported")
                return
            for frame in session.on_text(text):
                await ws.send_text(frame)
    except Close as close:
        await ws.close(close.code, close.reason)
    except WebSocketDisconnect:
        return


app = Starlette(routes=[WebSocketRoute("/v1/stream", stream)])
