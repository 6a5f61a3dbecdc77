"""Summarise py-spy's collapsed stacks (`py-spy record -f raw`): where a server's time goes.

Prints the top frames by self time (where the CPU actually is) and by inclusive time (which
subsystem pays for it), and a rough split by area (engine, gateway/app, websockets, uvicorn,
asyncio, JSON, GC-visible frames). Idle time in the event loop's selector is reported apart
so that "busy" percentages mean busy.

    .venv/bin/python bench/experiments/stacks.py bench/results/profile-microadjust-throughput.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter

IDLE = re.compile(r"^(select|poll|_run_once) \((?:.*/)?selectors\.py")
# Matched against "/" + the frame's file path as py-spy prints it (relative to sys.path), first hit wins.
AREAS = [
    ("microadjust engine", "/microadjust/engine/"),
    ("microadjust (gateway, store, log, app)", "/microadjust/"),
    ("peer logic (floor_logic.py)", "/floor_logic.py"),
    ("uvicorn (incl. its websockets adapters)", "/uvicorn/"),
    ("websockets", "/websockets/"),
    ("starlette", "/starlette/"),
    ("asyncio", "/asyncio/"),
    ("json (stdlib)", "/json/"),
    ("logging", "/logging/"),
]


def frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; line numbers split one function otherwise.
    m = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    short = "/".join(path.split("/")[-2:])
    return f"{func} ({short})"


def main(path: str, top: int = 25) -> None:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = idle = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = stack.split(";")
            total += n
            leaf = frames[-1]
            if IDLE.match(leaf) or "select (selectors.py" in leaf or "(selectors.py" in leaf:
                idle += n
                continue
            self_t[frame_name(leaf)] += n
            for f in set(frame_name(f) for f in frames):
                incl[f] += n
            # The area is the innermost frame that belongs to one of ours or a known library.
            for f in reversed(frames):
                m = re.search(r"\((.*?):\d+\)$", f)
                file = "/" + (m.group(1) if m else "")
                hit = next((a for a, key in AREAS if key in file), None)
                if hit:
                    areas[hit] += n
                    break
            else:
                areas["other (builtins, C)"] += n
    busy = total - idle
    if not busy:
        print("no busy samples")
        return
    print(f"samples: {total}, idle in the selector: {100 * idle / total:.1f}%, busy: {busy}")
    print("\nby area (innermost known frame, % of busy):")
    for area, n in areas.most_common():
        print(f"  {100 * n / busy:5.1f}%  {area}")
    print(f"\ntop {top} by self time (% of busy):")
    for f, n in self_t.most_common(top):
        print(f"  {100 * n / busy:5.1f}%  {f}")
    print(f"\ntop {top} by inclusive time (% of busy):")
    for f, n in incl.most_common(top + 10)[:top]:
        print(f"  {100 * n / busy:5.1f}%  {f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
