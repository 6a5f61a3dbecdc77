"""Shared fixtures: a real microadjust server (uvicorn, real sockets) on a free port.

`live_server(settings, **parts)` starts `create_app(settings, **parts)` under the same uvicorn
configuration as `microadjust serve` (cli.Server) in a background thread with its own event
loop, waits until it accepts connections and returns its base URL (`http://127.0.0.1:PORT`).
The returned string also carries `.app` (the Starlette app, whose parts are on `app.state`),
`.ws(path)` for the WebSocket URL and `.stop()`. Every server is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer(str):
    app = None
    _server = None
    _thread: threading.Thread | None = None

    def ws(self, path: str = "/v1/stream?site=demo&v=1") -> str:
        return "ws" + self[len("http"):] + path

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        self._server.uvicorn.should_exit = True
        self._thread.join(timeout)


@pytest.fixture
def live_server():
    from microadjust.app import create_app
    from microadjust.cli import Server

    started: list[LiveServer] = []

    def start(settings, **parts) -> LiveServer:
        settings.port = settings.port if settings.port not in (0, 8000) else free_port()
        app = create_app(settings, **parts)
        server = Server(app, settings, log_level="warning")
        url = LiveServer(f"http://127.0.0.1:{settings.port}")
        url.app, url._server = app, server
        errors: list[BaseException] = []

        def run() -> None:
            try:
                # The event loop `microadjust serve` runs on (uvloop when installed, as uvicorn's
                # loop="auto" picks), so the tests exercise the transport on the production loop.
                with asyncio.Runner(loop_factory=server.uvicorn.config.get_loop_factory()) as runner:
                    runner.run(server.serve())
            except BaseException as exc:  # surfaced by the readiness wait below
                errors.append(exc)

        url._thread = threading.Thread(target=run, name=f"microadjust-{settings.port}", daemon=True)
        url._thread.start()
        started.append(url)
        deadline = time.monotonic() + 10
        while not server.uvicorn.started:
            if errors or not url._thread.is_alive():
                raise RuntimeError(f"server did not start: {errors}")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 10 s")
            time.sleep(0.02)
        return url

    yield start
    for url in started:
        url.stop()
