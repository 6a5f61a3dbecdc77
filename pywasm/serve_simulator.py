"""Serves only the rule simulator (server/microadjust/simulator.py) on 127.0.0.1, for the
Playwright specs and for trying the simulator without a configured site:

    .venv/bin/python pywasm/serve_simulator.py --port 8765     # then open /simulator

The full server (`microadjust serve`) serves the same routes once create_app mounts them.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from microadjust.simulator import simulator_routes


async def readyz(request):
    return PlainTextResponse("ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/readyz", readyz), *simulator_routes()])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
