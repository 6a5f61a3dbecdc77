"""Garbage-collector pauses of a Python process: put this directory first on PYTHONPATH and
Python imports it at start-up; `kill -USR1 <pid>` prints, per generation, how many collections
ran, their total and longest time to stderr (lines starting `GCPROBE`).

    PYTHONPATH=bench/experiments/gcprobe .venv/bin/microadjust serve --demo ... 2> gc.log &
    node bench/loadgen.mjs --scenario latency ...; kill -USR1 $!; grep GCPROBE gc.log

`kill -USR2 <pid>` prints how many objects the collector tracks (and how many `gc.freeze()`
set aside), then the 25 commonest types among them (lines starting `GCTYPES`): what a
collection has to walk, and garbage waiting in reference cycles.

Used for docs/PERFORMANCE.md "Garbage collector" and step 9 (no cycle per receive timeout); the
callback costs a few microseconds per collection, so compare runs that both have it.
"""

import gc
import signal
import sys
import time

_start: dict[int, float] = {}
_times: dict[int, list[float]] = {0: [], 1: [], 2: []}


def _callback(phase: str, info: dict) -> None:
    gen = info["generation"]
    if phase == "start":
        _start[gen] = time.perf_counter()
    elif gen in _start:
        _times[gen].append((time.perf_counter() - _start.pop(gen)) * 1000)


def _report(*_args) -> None:
    for gen, times in _times.items():
        if times:
            ordered = sorted(times)
            sys.stderr.write(f"GCPROBE gen{gen}: n={len(times)} total={sum(times):.1f}ms "
                             f"max={ordered[-1]:.2f}ms p50={ordered[len(ordered) // 2]:.3f}ms\n")
    sys.stderr.flush()


def _types(*_args) -> None:
    from collections import Counter

    objects = gc.get_objects()
    counts = Counter(type(o).__name__ for o in objects)
    sys.stderr.write(f"GCTYPES total={len(objects)} frozen={gc.get_freeze_count()}\n")
    for name, n in counts.most_common(25):
        sys.stderr.write(f"GCTYPES {name} {n}\n")
    sys.stderr.flush()


gc.callbacks.append(_callback)
signal.signal(signal.SIGUSR1, _report)
signal.signal(signal.SIGUSR2, _types)
