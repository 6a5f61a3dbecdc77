"""Side-by-side experiment: the same minimal endpoint on different Python WebSocket stacks.

It answers the questions the server owners must decide with numbers (DESIGN.md "Components"):
which WebSocket implementation under Starlette (uvicorn's `websockets` legacy protocol, uvicorn's
`websockets-sansio`, or websockets' own asyncio server), whether permessage-deflate stays off,
which JSON library, and whether `gc.freeze()` after start-up matters; `--impl microadjust` is
microadjust's own transport (what `microadjust serve` runs). The per-message work is
bench/peers/floor_logic.py in every variant, so only the stack differs.

    .venv/bin/python bench/experiments/ws_impls.py --impl sansio --json orjson --gc-freeze --port 9200

The harness runs the variants as servers named `exp:<impl>:<json>[:deflate][:gcfreeze]`, e.g.
`bench/run --quick --scenarios throughput,latency,idle --servers node,exp:sansio:orjson:gcfreeze`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from floor_logic import Close, FloorSession  # noqa: E402

SITE = "demo"


def json_codec(name: str):
    """(loads, dumps) returning/accepting str, for the JSON library named."""
    if name == "json":
        return json.loads, lambda o: json.dumps(o, separators=(",", ":"))
    if name == "ujson":
        import ujson

        return ujson.loads, ujson.dumps
    if name == "orjson":
        import orjson

        return orjson.loads, lambda o: orjson.dumps(o).decode()
    if name == "msgspec":
        import msgspec

        enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
        return dec.decode, lambda o: enc.encode(o).decode()
    raise SystemExit(f"unknown json library {name}")


def origins(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def starlette_app(port: int, loads, dumps):
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    allowed = set(origins(port))

    async def stream(ws: WebSocket) -> None:
        async def send(frames: list[str]) -> None:
            for frame in frames:
                await ws.send_text(frame)

        await serve_floor(ws, allowed, loads, dumps, send, WebSocketDisconnect)

    return Starlette(routes=[WebSocketRoute("/v1/stream", stream)])


async def serve_floor(ws, allowed: set, loads, dumps, send, disconnected: type[Exception]) -> None:
    """One socket of the floor logic on an ASGI-style `ws` (Starlette's WebSocket, or
    microadjust's StreamProtocol); `send(frames)` writes a message's answers."""
    if ws.query_params.get("site") != SITE or ws.headers.get("origin") not in allowed:
        await ws.close(code=1008)  # before accept: an HTTP 403 (PROTOCOL §2.1)
        return
    await ws.accept()
    session = FloorSession(SITE, loads, dumps)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await ws.close(1003, "binary frames not supported")
                return
            frames = session.on_text(text)
            if frames:
                await send(frames)
    except Close as close:
        await ws.close(close.code, close.reason)
    except disconnected:
        return


class FloorGateway:
    """The floor logic behind microadjust's own WebSocket transport (`transport.StreamProtocol`,
    the class `microadjust serve` gives uvicorn for upgrades): what the transport costs when
    the per-message work is the peers' and not the engine's."""

    def __init__(self, port: int, loads, dumps) -> None:
        self.allowed = set(origins(port))
        self.loads, self.dumps = loads, dumps

    async def endpoint(self, ws) -> None:
        from microadjust.transport import WebSocketDisconnect

        async def send(frames: list[str]) -> None:
            await ws.send_payloads([f.encode() for f in frames])  # one write for all of them

        await serve_floor(ws, self.allowed, self.loads, self.dumps, send, WebSocketDisconnect)


async def websockets_server(port: int, loads, dumps, deflate: bool, freeze: bool) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Response
    from websockets.datastructures import Headers

    def process_request(connection, request):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(request.path)
        if url.path != "/v1/stream" or parse_qs(url.query).get("site") != [SITE]:
            return Response(403, "Forbidden", Headers(), b"")
        return None

    async def handler(ws) -> None:
        session = FloorSession(SITE, loads, dumps)
        try:
            async for text in ws:
                if not isinstance(text, str):
                    await ws.close(1003, "binary frames not supported")
                    return
                for frame in session.on_text(text):
                    await ws.send(frame)
        except Close as close:
            await ws.close(close.code, close.reason)
        except ConnectionClosed:
            return

    async with serve(handler, "127.0.0.1", port, origins=origins(port), process_request=process_request,
                     compression="deflate" if deflate else None, max_size=65536):
        if freeze:
            gc.collect()
            gc.freeze()
        print(f"websockets server on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=["uvicorn-ws", "sansio", "websockets", "microadjust"], required=True)
    ap.add_argument("--json", default="json", choices=["json", "ujson", "orjson", "msgspec"])
    ap.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate (off by default, PROTOCOL §1)")
    ap.add_argument("--gc-freeze", action="store_true", help="gc.collect(); gc.freeze() once the server is up")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    loads, dumps = json_codec(args.json)
    if args.impl == "websockets":
        asyncio.run(websockets_server(args.port, loads, dumps, args.deflate, args.gc_freeze))
        return
    import uvicorn

    app = starlette_app(args.port, loads, dumps)
    if args.impl == "microadjust":
        from microadjust import transport

        ws = transport.protocol_class(FloorGateway(args.port, loads, dumps))
    else:
        ws = "websockets" if args.impl == "uvicorn-ws" else "websockets-sansio"
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", ws=ws,
                            ws_per_message_deflate=args.deflate, ws_max_size=65536)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if args.gc_freeze:
            # Everything allocated at start-up (modules, app) leaves the collector's generations,
            # so full collections under load only walk what the connections allocate.
            gc.collect()
            gc.freeze()
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
