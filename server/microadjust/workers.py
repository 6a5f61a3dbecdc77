"""`microadjust serve --workers N`: N server processes on one port, each a full peer on Redis.

The parent (`Supervisor`) serves nothing itself. It checks the port, prepares prometheus-client's
multiprocess directory (so `GET /metrics` on any worker sums all of them), then starts N copies
of `microadjust serve` with the same settings and a hidden `--worker-index`. Each worker binds
its own SO_REUSEPORT socket on the port (`become_worker`), so the kernel spreads incoming
connections over the workers; each has its own Redis connections, bus subscription and presence
id, exactly like a process on another machine, which is why N > 1 requires Redis.

* A worker that dies is restarted (its live gauges are dropped with `mark_worker_dead`); one that
  exits with an error status within `STARTUP_GRACE_S` of its start is a configuration or bind
  error: the supervisor stops the others and exits 1, rather than restarting it forever.
* SIGTERM or SIGINT to the parent drains every worker (SIGTERM to each: 4010 to their sockets,
  flush, exit) and waits for them up to the drain bound plus slack, then kills what is left.
* A worker whose parent dies (kill -9) gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and
  drains too: no orphaned workers holding the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import multiproc as metrics
from .settings import Limits, Settings

log = logging.getLogger("microadjust.workers")

STARTUP_GRACE_S = 5.0  # a worker that exits sooner than this after its start failed to start
RESTART_DELAY_S = 1.0  # between a crash and the replacement (a crash loop stays slow)


def become_worker(settings: Settings) -> socket.socket:
    """In a worker: die with the parent, bind this worker's SO_REUSEPORT socket."""
    from .cli import reuseport_socket  # noqa: PLC0415 - avoids an import cycle

    _die_with_parent()
    return reuseport_socket(settings.host, settings.port)


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() == 1:  # the parent already died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: Settings, args) -> None:
        self.settings = settings
        self.args = args
        self.n = settings.workers
        self.procs: dict[int, tuple[subprocess.Popen, float]] = {}  # index -> (process, started)
        self.stopping = False
        self.own_metrics_dir = False

    # ------------------------------------------------------------------ start

    def _worker_command(self, index: int) -> list[str]:
        a, s = self.args, self.settings
        cmd = [sys.executable, "-m", "microadjust", "serve", "--host", s.host, "--port", str(s.port),
               "--data-dir", str(s.data_dir), "--log-level", a.log_level,
               "--log-format", a.log_format or _inherited_format(),
               "--drain-timeout", repr(s.limits.drain_timeout_s), "--worker-index", str(index)]
        for spec in a.site or []:
            cmd += ["--site", spec]
        if s.demo:
            cmd.append("--demo")
        if s.rules_file is not None:
            cmd += ["--rules", str(s.rules_file)]  # the demo copy, made once by the parent
        if s.redis_cluster:
            cmd.append("--redis-cluster")
        if s.public_rules:
            cmd.append("--public-rules")
        cmd += ["--retention", str(s.retention_s)]
        defaults = Limits()
        for f in dataclasses.fields(Limits):  # every limit the command line changed
            value = getattr(s.limits, f.name)
            if f.name != "drain_timeout_s" and value != getattr(defaults, f.name):
                cmd += ["--limit", f"{f.name}={value!r}"]
        return cmd

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Secrets go through the environment, not the command line (visible in `ps`).
        env["MICROADJUST_REDIS_URL"] = self.settings.redis_url or ""
        if self.settings.admin_token:
            env["MICROADJUST_ADMIN_TOKEN"] = self.settings.admin_token
        return env

    def _start(self, index: int) -> None:
        proc = subprocess.Popen(self._worker_command(index), env=self._environment())
        self.procs[index] = (proc, time.monotonic())
        log.info("worker %d started (pid %d)", index, proc.pid)

    def _check_port(self) -> str | None:
        from .cli import reuseport_socket  # noqa: PLC0415

        try:
            reuseport_socket(self.settings.host, self.settings.port).close()
        except OSError as exc:
            return f"cannot bind {self.settings.host}:{self.settings.port} ({exc.strerror})"
        return None

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        problem = self._check_port()
        if problem is not None:
            print(f"microadjust: {problem}", file=sys.stderr)
            return 1
        given = os.environ.get(metrics.MULTIPROC_ENV)
        path = metrics.prepare_multiprocess_dir(given or None)
        self.own_metrics_dir = not given
        log.info("starting %d workers on %s:%d (metrics dir %s)", self.n, self.settings.host, self.settings.port, path)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        status = 0
        try:
            for i in range(self.n):
                self._start(i)
            status = self._watch()
        finally:
            self._stop_all()
            if self.own_metrics_dir:
                shutil.rmtree(path, ignore_errors=True)
        return status

    def _on_signal(self, signum, frame) -> None:
        if not self.stopping:
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(self.procs))
        self.stopping = True

    def _watch(self) -> int:
        while not self.stopping:
            time.sleep(0.2)
            for index, (proc, started) in list(self.procs.items()):
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                metrics.mark_worker_dead(proc.pid)
                if code > 0 and time.monotonic() - started < STARTUP_GRACE_S:
                    # It reported an error (bad setting, port taken, startup failure) rather than
                    # being killed: a replacement would fail the same way.
                    log.error("worker %d (pid %d) exited with status %d during start-up; stopping", index, proc.pid, code)
                    del self.procs[index]
                    return 1
                log.error("worker %d (pid %d) exited with status %d; restarting it", index, proc.pid, code)
                time.sleep(RESTART_DELAY_S)
                self._start(index)
        return 0

    def _stop_all(self) -> None:
        live = [p for p, _ in self.procs.values() if p.poll() is None]
        for proc in live:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        # Workers bound their own drain; the slack covers interpreter start-up and exit.
        deadline = time.monotonic() + self.settings.limits.drain_timeout_s + 5.0
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not exit within the drain bound; killing it", proc.pid)
                proc.kill()
                proc.wait()
        for proc, _ in self.procs.values():
            metrics.mark_worker_dead(proc.pid)
        codes = {p.pid: p.returncode for p, _ in self.procs.values()}
        log.info("workers stopped: %s", ", ".join(f"pid {pid} status {code}" for pid, code in codes.items()))


def _inherited_format() -> str:
    from .logs import default_format  # noqa: PLC0415

    return default_format()
