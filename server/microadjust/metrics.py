"""Prometheus metrics of a microadjust server (`GET /metrics`), correct across `--workers N`.

Every process records into the module-level metrics below; `exposition()` renders them. With
several worker processes each has its own memory, so prometheus-client's multiprocess mode is
used: when the environment variable `PROMETHEUS_MULTIPROC_DIR` names a directory *before this
module is first imported*, every process writes its samples to mmap'ed files there and
`exposition()` merges the files of all processes. `serve --workers N` must therefore call
`prepare_multiprocess_dir()` in the parent before it starts the workers, and
`mark_worker_dead(pid)` when a worker exits (so its live gauges stop counting).

Label values are closed sets (event kinds, reject reasons, Redis operations): an unbounded label
(visitor id, URL) would grow the exposition and the mmap files without limit.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .multiproc import MULTIPROC_ENV, mark_worker_dead, prepare_multiprocess_dir  # noqa: F401 - API
# prometheus-client picks file-backed or in-memory values once, at its import: what matters
# for exposition is the mode this process's metrics were created in, not the current env.
_MULTIPROC_AT_IMPORT = bool(os.environ.get(MULTIPROC_ENV))

# Buckets in seconds. Decisions are pure CPU work (sub-millisecond expected); event-to-pixel
# includes the network both ways and the browser's next animation frame (tens of ms).
_DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_PIXEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)

CONNECTIONS = Gauge(
    "microadjust_connections",
    "Open WebSocket connections (after hello).",
    multiprocess_mode="livesum",
)
EVENTS = Counter(
    "microadjust_events",
    "Accepted events (stored and acked), by kind; rate() gives events per second.",
    ["kind"],
)
PATCHES = Counter(
    "microadjust_patches",
    "Patch and revert messages sent to clients; rate() gives patches per second.",
    ["type"],
)
PATCH_REPORTS = Counter(
    "microadjust_patch_reports",
    "Client reports about patches (PROTOCOL section 5.2), by status.",
    ["status"],
)
DECISION_SECONDS = Histogram(
    "microadjust_decision_seconds",
    "Time to evaluate one event batch (engine only, no I/O).",
    buckets=_DECISION_BUCKETS,
)
EVENT_TO_PIXEL_SECONDS = Histogram(
    "microadjust_event_to_pixel_seconds",
    "Event-to-paint time measured by the client (the `ms` of an `applied` report).",
    buckets=_PIXEL_BUCKETS,
)
EVENT_LOOP_LAG_SECONDS = Histogram(
    "microadjust_event_loop_lag_seconds",
    "How late the event loop ran a callback scheduled every 100 ms (looplag.py).",
    buckets=_LAG_BUCKETS,
)
REDIS_RTT_SECONDS = Histogram(
    "microadjust_redis_rtt_seconds",
    "Round-trip time of Redis operations, by operation.",
    ["op"],
    buckets=_REDIS_BUCKETS,
)


_children: dict[tuple, Any] = {}


def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once per label set: `labels()` takes a lock and checks
    the label values on every call (~0.7 us), and the hot path counts per event and per batch.
    Label values here come from closed sets (event kinds, reasons, ops), so the cache is bounded."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def redis_rtt(op: str):
    """`REDIS_RTT_SECONDS.labels(op)`, once per op (the store observes a round trip per batch)."""
    return labelled(REDIS_RTT_SECONDS, op)
REDIS_ERRORS = Counter(
    "microadjust_redis_errors",
    "Redis operations that failed (connection lost, timeout), by operation.",
    ["op"],
)
WRITE_BUFFER_DEPTH = Gauge(
    "microadjust_write_buffer_depth",
    "Accepted events held in memory while Redis is unavailable (flushed when it returns).",
    multiprocess_mode="livesum",
)
WRITE_BUFFER_REFUSED = Counter(
    "microadjust_write_buffer_refused",
    "Event batches refused (not acked) because the write buffer was full during an outage.",
)
STORE_CONFLICTS = Counter(
    "microadjust_store_conflicts",
    "Commits that lost a compare-and-set race (the batch was re-evaluated).",
)
BUS_MESSAGES = Counter(
    "microadjust_bus_messages",
    "Cross-process bus messages, by direction (sent / received) and kind.",
    ["direction", "kind"],
)
STORE_EVICTIONS = Counter(
    "microadjust_store_evictions",
    "Embedded store: visitors dropped (with their sessions) and sessions dropped, by reason "
    "(retention: idle longer than retention_s; capacity: the least recently active beyond the cap).",
    ["what", "reason"],
)
RESUMES = Counter(
    "microadjust_resumes",
    "Reconnects that asked for missed patches, by outcome (complete / incomplete).",
    ["outcome"],
)
REJECTED_FRAMES = Counter(
    "microadjust_rejected_frames",
    "Inbound frames or messages rejected, by reason (the PROTOCOL section 7 code or close).",
    ["reason"],
)


def multiprocess_enabled() -> bool:
    """True when this process's metrics are file-backed (shared across workers)."""
    return _MULTIPROC_AT_IMPORT


def exposition() -> tuple[bytes, str]:
    """The body and content type for `GET /metrics` (all workers merged in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def endpoint(request):
    """Starlette endpoint for `GET /metrics` (unauthenticated, like most Prometheus targets:
    expose it on an internal interface or filter it at the load balancer)."""
    from starlette.responses import Response  # noqa: PLC0415 - keeps engine-side imports light

    body, content_type = exposition()
    return Response(body, media_type=content_type.split(";")[0], headers={"Content-Type": content_type})
