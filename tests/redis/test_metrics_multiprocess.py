"""`GET /metrics` body: correct when several worker processes record (prometheus multiprocess).

Lives with the Redis tests because it serves the same scale-out (`serve --workers N`). The
workers are real processes: prometheus-client chooses file-backed values at import time, so
each must start with PROMETHEUS_MULTIPROC_DIR already set, as the CLI arranges.
"""

from __future__ import annotations

import os
import subprocess
import sys

WORKER = """
from microadjust import metrics
metrics.CONNECTIONS.inc(2)
metrics.EVENTS.labels("hover").inc(5)
metrics.REJECTED_FRAMES.labels("bad_json").inc()
metrics.DECISION_SECONDS.observe(0.0003)
"""

EXPOSE = """
import sys
from microadjust import metrics
body, ctype = metrics.exposition()
assert ctype.startswith("text/plain"), ctype
sys.stdout.write(body.decode())
"""


def run(code: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout


def test_metrics_of_all_workers_are_summed_in_one_exposition(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):  # three workers, each records then exits
        run(WORKER, env)
    body = run(EXPOSE, env)
    assert 'microadjust_events_total{kind="hover"} 15.0' in body
    assert 'microadjust_rejected_frames_total{reason="bad_json"} 3.0' in body
    assert "microadjust_decision_seconds_count 3.0" in body
    # Connections are a live gauge; the exited workers were not marked dead, so they still count.
    assert "microadjust_connections 6.0" in body


def test_a_dead_workers_connections_stop_counting(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pid_code = WORKER + "\nimport os; print(os.getpid())"
    pid = int(run(pid_code, env).strip())
    run(pid_code, env)
    run(f"from microadjust import metrics; metrics.mark_worker_dead({pid})", env)
    assert "microadjust_connections 2.0" in run(EXPOSE, env)


def test_a_single_process_exposes_its_own_metrics_without_a_directory():
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    body = run(WORKER + EXPOSE, env)
    assert 'microadjust_events_total{kind="hover"} 5.0' in body
    assert "microadjust_write_buffer_depth 0.0" in body
