"""The engine wheel that Pyodide loads (pywasm/build_wheel.py): a valid, reproducible pure wheel
holding the engine and nothing else, which imports and evaluates from the zip as it is."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "server"

_spec = importlib.util.spec_from_file_location("build_wheel", ROOT / "pywasm" / "build_wheel.py")
build_wheel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_wheel)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel.build_wheel(SRC, tmp_path_factory.mktemp("dist"))


def test_wheel_is_named_as_pep_427_asks_for_a_pure_python_wheel(wheel: Path):
    version = build_wheel.read_version(SRC / "microadjust" / "__init__.py")
    assert wheel.name == f"microadjust_engine-{version}-py3-none-any.whl"


def test_wheel_holds_the_engine_sources_and_its_metadata_only(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(SRC).as_posix() for p in (SRC / "microadjust" / "engine").rglob("*.py") if "__pycache__" not in p.parts}
    info = wheel.name.split("-py3")[0] + ".dist-info"
    assert names == {"microadjust/__init__.py", *sources, f"{info}/METADATA", f"{info}/WHEEL", f"{info}/top_level.txt", f"{info}/RECORD"}


def test_record_lists_every_file_with_its_sha256_and_size(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        record_name = next(n for n in zf.namelist() if n.endswith("/RECORD"))
        rows = list(csv.reader(io.StringIO(zf.read(record_name).decode())))
        assert {r[0] for r in rows} == set(zf.namelist())
        for name, digest, size in rows:
            if name == record_name:
                assert (digest, size) == ("", "")
                continue
            data = zf.read(name)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (want, len(data)), name


def test_wheel_metadata_declares_a_pure_py3_wheel(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        wheel_file = zf.read(next(n for n in zf.namelist() if n.endswith("/WHEEL"))).decode()
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("/METADATA"))).decode()
    assert "Root-Is-Purelib: true" in wheel_file and "Tag: py3-none-any" in wheel_file
    assert "Name: microadjust-engine" in metadata
    assert "Requires-Dist" not in metadata  # Pyodide must not need to fetch anything else


def test_the_same_sources_build_the_same_bytes(wheel: Path, tmp_path: Path):
    again = build_wheel.build_wheel(SRC, tmp_path)
    assert again.read_bytes() == wheel.read_bytes()


def test_engine_imports_and_evaluates_from_the_wheel_itself(wheel: Path):
    # A wheel is a zip Python can import from: this is the code Pyodide will unpack.
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from microadjust.engine import compile_rules, evaluate;"
        "import microadjust.engine as e;"
        "rules = compile_rules(json.load(open(sys.argv[2])));"
        "r = evaluate(None, [{'k': 'view', 'ts': 1, 'seq': 1, 'url': '/'}], 1, rules);"
        "print(json.dumps({'file': e.__file__, 'keys': sorted(r)}))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, str(wheel), str(SRC / "microadjust" / "demo" / "rules.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["file"].startswith(str(wheel))
    assert out["keys"] == ["changed", "patches", "profile", "reverts"]


def test_a_source_tree_without_the_engine_is_refused_with_a_clear_error(tmp_path: Path):
    (tmp_path / "microadjust").mkdir()
    (tmp_path / "microadjust" / "__init__.py").write_text('__version__ = "1.0"\n')
    with pytest.raises(build_wheel.BuildError, match="microadjust/engine/__init__.py"):
        build_wheel.build_wheel(tmp_path, tmp_path / "out")


def test_a_package_without_a_version_is_refused(tmp_path: Path):
    (tmp_path / "microadjust" / "engine").mkdir(parents=True)
    (tmp_path / "microadjust" / "__init__.py").write_text("")
    (tmp_path / "microadjust" / "engine" / "__init__.py").write_text("")
    with pytest.raises(build_wheel.BuildError, match="no __version__"):
        build_wheel.build_wheel(tmp_path, tmp_path / "out")
