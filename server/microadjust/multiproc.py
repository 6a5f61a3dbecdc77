"""prometheus-client's multiprocess directory, for a parent that must not record metrics itself.

`serve --workers N` prepares the directory before starting the workers and marks each worker
dead when it exits. This module creates no metric: importing `metrics` with
`PROMETHEUS_MULTIPROC_DIR` set would open sample files there at once, before the directory
exists, and would count the supervisor as a live process. `metrics` re-exports both functions.
"""

from __future__ import annotations

import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Point prometheus-client at an empty directory for a multi-process server; returns it.

    Call in the parent process before workers are started (they inherit the environment).
    Leftover files from a previous run would be merged into the new figures, so the directory
    is emptied. Without `path`, a fresh temporary directory is created.
    """
    if path is None:
        path = tempfile.mkdtemp(prefix="microadjust-metrics-")
    else:
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.makedirs(path)
    os.environ[MULTIPROC_ENV] = path
    return path


def mark_worker_dead(pid: int) -> None:
    """Forget the live gauges (connections, buffer depth) of a worker that exited."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess  # noqa: PLC0415 - creates no metric

        multiprocess.mark_process_dead(pid)
