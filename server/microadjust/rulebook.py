"""The live rule set: loaded from a file, edited through the admin API, hot-reloaded.

A change is all or nothing: the candidate document is compiled with the engine's
`compile_rules`; if it raises `RuleSetError`, the errors (each with its exact path) go back to
the caller and the last good set stays live. A good change is swapped in atomically (the
gateway reads `rulebook.ruleset` per batch, so the next batch uses it, no restart) and, when a
file is configured, written back to it atomically (temp file + rename) so a restart keeps it.

The file is also watched (mtime and size polled every `poll_s`, ~1 s): an edit on disk takes
effect the same way, and a broken edit is logged and reported in `reload_error` while the last
good set keeps running.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("microadjust.rules")

EMPTY_DOC: dict[str, Any] = {"version": 1, "rules": []}


class RulesFileError(Exception):
    """The rules file cannot be read or parsed; the message names the file and the problem."""


def read_rules_file(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesFileError(f"rules file {path}: not found") from None
    except OSError as exc:
        raise RulesFileError(f"rules file {path}: cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesFileError(f"rules file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise RulesFileError(f"rules file {path}: expected a JSON object with a \"rules\" array")
    return doc


class Rulebook:
    def __init__(self, engine, doc: dict[str, Any] | None = None, path: Path | None = None, poll_s: float = 1.0) -> None:
        self.engine = engine
        self.path = Path(path) if path else None
        self.poll_s = poll_s
        self.revision = 0
        self.reload_error: dict[str, Any] | None = None
        self._stamp: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        if doc is None and self.path is not None:
            doc = read_rules_file(self.path)
            self._stamp = self._file_stamp()
        self.doc = copy.deepcopy(doc if doc is not None else EMPTY_DOC)
        # Raises RuleSetError at start-up: a server must not start on a broken rule set.
        self.ruleset = engine.compile_rules(self.doc)

    # ------------------------------------------------------------------ changes

    def validate(self, doc: Any) -> list[dict[str, str]]:
        """The errors of a candidate document ([] when it compiles)."""
        try:
            self.engine.compile_rules(doc)
        except self.engine.RuleSetError as exc:
            return list(exc.errors)
        return []

    async def replace(self, doc: dict[str, Any]) -> list[dict[str, str]]:
        """Swap in `doc` if it compiles (then persist it); returns its errors otherwise."""
        async with self._lock:
            try:
                ruleset = self.engine.compile_rules(doc)
            except self.engine.RuleSetError as exc:
                return list(exc.errors)
            if self.path is not None:
                self._write(doc)
            self.doc = copy.deepcopy(doc)
            self.ruleset = ruleset
            self.revision += 1
            self.reload_error = None
            log.info("rule set revision %d live (%d rules)", self.revision, len(doc.get("rules", [])))
            return []

    def rule(self, rule_id: str) -> dict[str, Any] | None:
        for rule in self.doc.get("rules", []):
            if isinstance(rule, dict) and rule.get("id") == rule_id:
                return rule
        return None

    def _write(self, doc: dict[str, Any]) -> None:
        assert self.path is not None
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".rules-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = self._file_stamp()  # our own write is not a change to reload

    # ------------------------------------------------------------------ hot reload

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def reload_if_changed(self) -> bool:
        """Load the file if it changed since we last read or wrote it; True when a new set is live."""
        if self.path is None:
            return False
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            doc = read_rules_file(self.path)
        except RulesFileError as exc:
            self.reload_error = {"errors": [{"path": "", "msg": str(exc)}]}
            log.error("%s; keeping rule set revision %d", exc, self.revision)
            return False
        async with self._lock:
            try:
                ruleset = self.engine.compile_rules(doc)
            except self.engine.RuleSetError as exc:
                self.reload_error = {"errors": list(exc.errors)}
                log.error("rules file %s rejected, keeping revision %d: %s", self.path, self.revision,
                          "; ".join(f"{e['path']}: {e['msg']}" for e in exc.errors[:5]))
                return False
            self.doc, self.ruleset = doc, ruleset
            self.revision += 1
            self.reload_error = None
        log.info("rules file %s reloaded: revision %d", self.path, self.revision)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.reload_if_changed()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("rules reload failed")

    def start(self) -> None:
        if self.path is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
            self._watcher = None
