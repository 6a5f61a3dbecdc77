"""The event-loop lag monitor (microadjust/looplag.py) and its metric."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from microadjust.looplag import LoopLag

from .helpers import make_settings


async def test_a_loop_held_for_50_ms_shows_as_lag():
    seen: list[float] = []
    lag = LoopLag(interval=0.01, observe=seen.append)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.06)  # holds the loop, as a long batch or a collection would
        await asyncio.sleep(0.03)
    finally:
        lag.stop()
    assert len(seen) >= 5
    assert lag.worst >= 0.04, seen
    count = len(seen)
    await asyncio.sleep(0.03)
    assert len(seen) == count  # stopped: no timer left behind


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval must be positive"):
        LoopLag(interval=0)


async def test_metrics_expose_the_loop_lag(live_server, tmp_path):
    server = live_server(make_settings(tmp_path))
    await asyncio.sleep(0.25)  # two intervals
    async with httpx.AsyncClient() as client:
        text = (await client.get(server + "/metrics")).text
    counts = [line for line in text.splitlines() if line.startswith("microadjust_event_loop_lag_seconds_count")]
    assert counts and float(counts[0].split()[-1]) >= 1, counts
