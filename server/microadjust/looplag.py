"""Event-loop lag: how late the loop runs a callback scheduled for a given time.

Everything a microadjust process does for its sockets runs on one event loop, so anything that
holds the loop (a long batch, a collection, a slow disk write, a neighbour taking the core) delays
every socket's answer by as much. `LoopLag` schedules a callback every `interval` seconds and
records how late it ran in `microadjust_event_loop_lag_seconds` (Prometheus histogram), the
figure an operator watches next to the answer latency: when tails grow, it tells a stalled loop
from a slow network or client. It costs one timer per interval (ten per second by default).
"""

from __future__ import annotations

import asyncio

from . import metrics


class LoopLag:
    def __init__(self, interval: float = 0.1, observe=None) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = interval
        self.observe = observe if observe is not None else metrics.EVENT_LOOP_LAG_SECONDS.observe
        self.worst = 0.0  # the largest lag seen (seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def _schedule(self) -> None:
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        lag = max(self._loop.time() - self._due, 0.0)
        if lag > self.worst:
            self.worst = lag
        self.observe(lag)
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
