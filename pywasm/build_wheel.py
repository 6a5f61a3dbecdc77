"""Packages the pure engine as a pure-Python wheel that Pyodide can load (issue 7).

The wheel `microadjust_engine-<version>-py3-none-any.whl` holds only `microadjust/__init__.py`
and `microadjust/engine/*.py`: everything else in the `microadjust` package (server, stores,
Redis) needs sockets or C extensions that Pyodide lacks, and the engine imports none of it
(tests/pywasm/test_import_guard.py proves that).

Written with the standard library's zipfile rather than a build backend so that the build runs
offline and is byte-for-byte reproducible: entries are sorted and carry a fixed timestamp, so the
same sources always give the same wheel and the same sha256 in the Pyodide lockfile.

    python pywasm/build_wheel.py [--src server] [--out pywasm/dist]   # prints the wheel path
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "microadjust_engine"  # normalised distribution name, as wheel file names need it
PROJECT_NAME = "microadjust-engine"
# 1980-01-01 is the earliest time a zip entry can carry; any fixed value makes builds reproducible.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """The sources are not in a state a wheel can be built from."""


def read_version(package_init: Path) -> str:
    """`__version__` from microadjust/__init__.py, read as text so the package is not imported."""
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', package_init.read_text("utf-8"), re.M)
    if not match:
        raise BuildError(f"{package_init}: no __version__ = '...' line")
    return match.group(1)


def engine_sources(src: Path) -> list[tuple[str, bytes]]:
    """(archive name, content) of every file the wheel carries, sorted by name."""
    package = src / "microadjust"
    init = package / "__init__.py"
    engine = package / "engine"
    if not init.is_file() or not (engine / "__init__.py").is_file():
        raise BuildError(f"{src}: expected microadjust/__init__.py and microadjust/engine/__init__.py")
    files = [init, *sorted(p for p in engine.rglob("*.py") if "__pycache__" not in p.parts)]
    return sorted((p.relative_to(src).as_posix(), p.read_bytes()) for p in files)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def dist_info(version: str, sources: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The .dist-info files (PEP 427 / core metadata 2.1), RECORD last as the spec asks."""
    info = f"{DIST_NAME}-{version}.dist-info"
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {PROJECT_NAME}\n"
        f"Version: {version}\n"
        "Summary: The pure microadjust engine (profiles, rules, guards, patches) for Pyodide\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.11\n"
    ).encode()
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: microadjust pywasm/build_wheel.py\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode()
    files = [(f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel), (f"{info}/top_level.txt", b"microadjust\n")]
    lines = [f"{name},{_record_hash(data)},{len(data)}" for name, data in [*sources, *files]]
    lines.append(f"{info}/RECORD,,")
    return [*files, (f"{info}/RECORD", ("\n".join(lines) + "\n").encode())]


def build_wheel(src: Path, out: Path) -> Path:
    version = read_version(src / "microadjust" / "__init__.py")
    sources = engine_sources(src)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{DIST_NAME}-{version}-py3-none-any.whl"
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in [*sources, *dist_info(version, sources)]:
            entry = zipfile.ZipInfo(name, FIXED_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    tmp.replace(path)  # never leave a half-written wheel where the lockfile step would read it
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "server", help="directory holding microadjust/")
    parser.add_argument("--out", type=Path, default=ROOT / "pywasm" / "dist", help="output directory")
    args = parser.parse_args(argv)
    try:
        print(build_wheel(args.src, args.out))
    except BuildError as exc:
        print(f"build_wheel: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
