"""The engine imports nothing Pyodide lacks (issue 7): only the standard library, and none of it
that cannot work in a browser (sockets, TLS, threads, processes, an event loop).

Two independent proofs: a static scan of every import statement in microadjust/engine/, and a
real import of the engine in a fresh interpreter where a meta-path finder refuses those modules
(which also catches what the engine's standard-library imports pull in behind it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "server"
ENGINE = SRC / "microadjust" / "engine"

# Absent from Pyodide, present but unusable there (no sockets, threads or processes in a
# browser tab), or server-side third-party packages that are not in the engine wheel.
BLOCKED = sorted({
    "socket", "ssl", "select", "selectors", "asyncio", "threading", "_thread", "subprocess",
    "multiprocessing", "concurrent", "signal", "mmap", "ctypes", "sqlite3", "lzma", "tkinter",
    "curses", "readline", "dbm", "pwd", "grp", "resource", "fcntl", "termios", "venv", "ensurepip",
    "http", "urllib", "ftplib", "smtplib", "socketserver", "xmlrpc", "webbrowser",
    "redis", "hiredis", "ujson", "orjson", "msgspec", "starlette", "uvicorn", "websockets",
    "prometheus_client", "httpx", "anyio", "numpy",
})


def engine_files() -> list[Path]:
    files = sorted(ENGINE.rglob("*.py"))
    assert files, f"no engine sources under {ENGINE}"
    return files


def imports_of(path: Path) -> list[tuple[int, int, str]]:
    """(line, relative level, module) of every import in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, 0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.level, node.module or ""))
    return found


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: p.name)
def test_engine_module_imports_only_the_standard_library_pyodide_has(path: Path):
    problems = []
    for line, level, module in imports_of(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        top = module.split(".")[0]
        if level == 0 and top == "__future__":
            continue
        if level == 0 and top not in sys.stdlib_module_names:
            problems.append(f"{where}: imports {module}, which is not in the standard library")
        elif level == 0 and top in BLOCKED:
            problems.append(f"{where}: imports {module}, which Pyodide lacks or cannot run")
        elif level > 1:
            problems.append(f"{where}: relative import leaves microadjust.engine (level {level}); the wheel carries only the engine")
    assert problems == []


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: p.name)
def test_engine_module_has_no_dynamic_imports_the_scan_could_miss(path: Path):
    calls = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in {"__import__", "import_module"}:
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}()")
    assert calls == []


GUARDED_IMPORT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    blocked = set(json.loads(sys.argv[1]))

    class RefuseWhatPyodideLacks(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is not available under Pyodide")
            return None

    # Modules the interpreter loaded at start-up would be found in sys.modules without asking
    # the finder; forget them so that an import by the engine has to come through it.
    for name in [m for m in sys.modules if m.split(".")[0] in blocked]:
        del sys.modules[name]
    sys.meta_path.insert(0, RefuseWhatPyodideLacks())
    before = set(sys.modules)
    sys.path.insert(0, sys.argv[2])

    import microadjust.engine
    import microadjust.engine.vectors

    new = sorted(set(sys.modules) - before)
    print(json.dumps({"file": microadjust.engine.__file__, "new": new}))
    """
)


def guarded_import(path_entry: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", GUARDED_IMPORT, json.dumps(BLOCKED), path_entry],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"the engine needs a module Pyodide lacks:\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_engine_imports_with_everything_pyodide_lacks_refused():
    loaded = guarded_import(str(SRC))
    assert loaded["file"].startswith(str(ENGINE))
    outside = [m for m in loaded["new"] if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "microadjust"]
    assert outside == []


def test_importing_the_engine_loads_no_server_part_of_the_package():
    loaded = guarded_import(str(SRC))
    ours = [m for m in loaded["new"] if m.split(".")[0] == "microadjust"]
    assert ours and all(m == "microadjust" or m.startswith("microadjust.engine") for m in ours), ours


def test_the_guard_refuses_a_blocked_module(tmp_path: Path):
    # The guard itself must bite: a package importing `socket` fails to import under it.
    pkg = tmp_path / "microadjust"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("import socket\n")
    (pkg / "engine" / "vectors.py").write_text("")
    with pytest.raises(AssertionError, match="socket is not available under Pyodide"):
        guarded_import(str(tmp_path))
