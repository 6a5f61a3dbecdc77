"""The live rule set: loaded from a file, edited through the admin API, hot-reloaded.

A change is all or nothing: the candidate document is compiled with the engine's
`compile_rules`; if it raises `RuleSetError`, the errors (each with its exact path) go back to
the caller and the last good set stays live. A good change is swapped in atomically (the
gateway reads `rulebook.ruleset` per batch, so the next batch uses it, no restart) and, when a
file is configured, written back to it atomically (temp file + rename) so a restart keeps it.

The file is also watched (mtime and size polled every `poll_s`, ~1 s): an edit on disk takes
effect the same way, and a broken edit is logged and reported in `reload_error` while the last
good set keeps running.

In Redis mode (`attach(bus)`, docs/SCALING.md) the live set is the `rules` config document in
Redis, shared by every process: a change (admin API or file edit) is stored there first, then
swapped in; the other processes get it through the bus (pub/sub, plus a one-second version
poll) and swap it in too (`adopt`). At start-up the newer of the document in Redis and the
rules file wins: the file seeds Redis when Redis has none or the file was edited after the
document was stored. Only the process that made a change writes it back to its file.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import jsonfast

log = logging.getLogger("microadjust.rules")

EMPTY_DOC: dict[str, Any] = {"version": 1, "rules": []}


class RulesFileError(Exception):
    """The rules file cannot be read or parsed; the message names the file and the problem."""


class RuleEdit(Exception):
    """An edit of the live rule set refused against the document it was given (the HTTP status,
    an error code and the message)."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def find_rule(doc: dict[str, Any], rule_id: str) -> dict[str, Any] | None:
    for rule in doc.get("rules", []):
        if isinstance(rule, dict) and rule.get("id") == rule_id:
            return rule
    return None


class RulesUnavailable(Exception):
    """Redis mode: the change could not be stored in Redis, so it was not made anywhere."""

RULES_DOCUMENT = "rules"  # name of the config document in Redis (`ma:doc:rules`)


def read_rules_file(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesFileError(f"rules file {path}: not found") from None
    except UnicodeDecodeError as exc:
        raise RulesFileError(f"rules file {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RulesFileError(f"rules file {path}: cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
        jsonfast.check_plain(doc)  # what json.loads reads beyond RFC 8259: NaN, Infinity, lone surrogates
    except json.JSONDecodeError as exc:
        raise RulesFileError(f"rules file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise RulesFileError(f"rules file {path}: invalid JSON: {exc}") from None
    except RecursionError:
        raise RulesFileError(f"rules file {path}: invalid JSON: nested too deeply") from None
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
        self.shared = None  # Redis mode: the `redis_bus.RedisBus` holding the live document
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

    async def replace(self, doc: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, str]]:
        """Swap in `doc` if it compiles (then persist it); returns its errors otherwise.

        `doc` may be an edit: a function of the live document, called under the lock that
        serialises changes, so that two edits at once (add one rule, replace another) both
        land instead of the later one writing back what it read before the other. It may raise
        (`RuleEdit`) to refuse the change; then nothing changes."""
        async with self._lock:
            if callable(doc):
                doc = doc(self.doc)
            try:
                ruleset = self.engine.compile_rules(doc)
            except self.engine.RuleSetError as exc:
                return list(exc.errors)
            await self._share(doc)  # raises RulesUnavailable: then nothing changed anywhere
            if self.path is not None:
                self._write(doc)
            self.doc = copy.deepcopy(doc)
            self.ruleset = ruleset
            self.revision += 1
            self.reload_error = None
            log.info("rule set revision %d live (%d rules)", self.revision, len(doc.get("rules", [])))
            return []

    async def _share(self, doc: dict[str, Any]) -> None:
        if self.shared is None:
            return
        from .store.redis import REDIS_DOWN_ERRORS  # noqa: PLC0415 - Redis mode only

        try:
            await self.shared.put_document(RULES_DOCUMENT, doc)
        except REDIS_DOWN_ERRORS as exc:
            raise RulesUnavailable(f"the rule set could not be stored in Redis ({exc}); nothing changed") from None

    async def attach(self, bus) -> None:
        """Redis mode: make the `rules` document in Redis the live set, shared by all processes."""
        from .store.redis import REDIS_DOWN_ERRORS  # noqa: PLC0415 - Redis mode only

        self.shared = bus
        try:
            doc, version, at_ms = await bus.read_document(RULES_DOCUMENT)
            stamp = self._file_stamp() if self.path is not None else None
            file_newer = stamp is not None and stamp[0] / 1e9 > at_ms / 1000
            if doc is None or (file_newer and doc != self.doc):
                version = await bus.put_document(RULES_DOCUMENT, self.doc)
                log.info("rule set stored in Redis as version %d (%s)", version,
                         "from the rules file" if self.path else "seed")
            elif doc != self.doc:
                await self.adopt(RULES_DOCUMENT, doc)
        except REDIS_DOWN_ERRORS as exc:
            log.warning("rules document not read from Redis yet (%s); it is polled every second", exc)
            version = 0
        bus.watch(RULES_DOCUMENT, version)

    async def adopt(self, name: str, doc: Any) -> None:
        """A new `rules` document from another process (bus `on_change`): swap it in."""
        if name != RULES_DOCUMENT:
            return
        async with self._lock:
            if doc == self.doc:
                return
            try:
                ruleset = self.engine.compile_rules(doc)
            except self.engine.RuleSetError as exc:
                # Another process accepted it, so its engine differs from ours (a rolling upgrade).
                self.reload_error = {"errors": list(exc.errors)}
                log.error("shared rule set rejected by this process, keeping revision %d: %s", self.revision,
                          "; ".join(f"{e['path']}: {e['msg']}" for e in exc.errors[:5]))
                return
            self.doc, self.ruleset = copy.deepcopy(doc), ruleset
            self.revision += 1
            self.reload_error = None
        log.info("rule set revision %d live from Redis (%d rules)", self.revision, len(doc.get("rules", [])))

    def rule(self, rule_id: str) -> dict[str, Any] | None:
        return find_rule(self.doc, rule_id)

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
            if doc == self.doc:
                # e.g. another worker wrote back the change this one adopted, or a broken edit
                # was undone: the file says what is live, so there is no error to show.
                self.reload_error = None
                return False
            try:
                ruleset = self.engine.compile_rules(doc)
            except self.engine.RuleSetError as exc:
                self.reload_error = {"errors": list(exc.errors)}
                log.error("rules file %s rejected, keeping revision %d: %s", self.path, self.revision,
                          "; ".join(f"{e['path']}: {e['msg']}" for e in exc.errors[:5]))
                return False
            try:
                await self._share(doc)
            except RulesUnavailable as exc:
                self._stamp = None  # try again at the next poll
                self.reload_error = {"errors": [{"path": "", "msg": str(exc)}]}
                log.error("rules file %s: %s", self.path, exc)
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
