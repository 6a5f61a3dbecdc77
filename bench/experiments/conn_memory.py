"""Where an idle connection's memory goes: tracemalloc over `microadjust serve --demo`.

Runs the server in this process with tracemalloc on, drives it with the benchmark's load generator
(`bench/loadgen.mjs --scenario idle`: N clients connect and say hello, hold), and compares
snapshots taken after a 50-connection warm-up and with the N connections open. Prints the bytes
per connection by allocating line (the Python heap only: tracemalloc does not see the kernel's
socket buffers or memory freed to the allocator's free lists, so the total is below the RSS
figure of `bench/run --scenarios idle`).

    .venv/bin/python bench/experiments/conn_memory.py [--conns 1000] [--top 25]
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadgen(port: int, conns: int, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["node", str(ROOT / "bench" / "loadgen.mjs"), "--url", f"ws://127.0.0.1:{port}/v1/stream?site=demo&v=1",
         "--origin", f"http://127.0.0.1:{port}", "--scenario", "idle", "--conns", str(conns), *extra],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def drive(port: int, conns: int, top: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    warm = loadgen(port, 50, ["--hold", "0.2", "--seed", "7"])
    warm.wait()
    time.sleep(1.0)
    gc.collect()
    before = tracemalloc.take_snapshot()
    lg = loadgen(port, conns, ["--control", "stdin", "--connect-rate", "2000"])
    for line in lg.stdout:
        if line.startswith("READY connected"):
            time.sleep(1.5)
            gc.collect()
            after = tracemalloc.take_snapshot()
            n = int(line.split('"conns":')[1].split("}")[0])
            stats = after.compare_to(before, "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"{n} idle connections: Python heap +{total / n / 1024:.1f} KB per connection")
            for s in stats[:top]:
                frame = s.traceback[0]
                where = os.path.relpath(frame.filename, ROOT) if str(frame.filename).startswith(str(ROOT)) else \
                    "/".join(Path(frame.filename).parts[-2:])
                print(f"{s.size_diff / n:8.0f} B/conn  {s.count_diff / n:6.1f} blocks/conn  {where}:{frame.lineno}")
            lg.stdin.write("next\n")
            lg.stdin.flush()
        elif line.startswith("READY viewed"):
            lg.stdin.write("next\n")
            lg.stdin.flush()
    lg.wait()
    os.kill(os.getpid(), signal.SIGINT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--top", type=int, default=25)
    opts = ap.parse_args()
    sys.path.insert(0, str(ROOT / "server"))
    from microadjust.cli import main as cli_main  # noqa: PLC0415

    tracemalloc.start(1)
    port = free_port()
    threading.Thread(target=drive, args=(port, opts.conns, opts.top), daemon=True).start()
    with tempfile.TemporaryDirectory() as data:
        cli_main(["serve", "--demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data,
                  "--log-level", "warning"])


if __name__ == "__main__":
    main()
