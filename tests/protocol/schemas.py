"""Loads protocol/schema/*.schema.json into one registry so `$ref`s between files resolve."""

from __future__ import annotations

import json
import pathlib

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "protocol" / "schema"
VECTOR_DIR = ROOT / "protocol" / "vectors" / "messages"


def _load() -> tuple[Registry, dict[str, dict]]:
    schemas = {}
    registry = Registry()
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        doc = json.loads(path.read_text())
        schemas[path.name.removesuffix(".schema.json")] = doc
        registry = registry.with_resource(doc["$id"], Resource.from_contents(doc))
    return registry, schemas


REGISTRY, SCHEMAS = _load()


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY)


def _join(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_paths(errors) -> set[str]:
    """Every path the errors (and their sub-errors) point at, as `events[3].dur`.

    jsonschema reports a missing property at its parent; the hand validator names the property
    itself (`events[0].phase`), which is what a developer wants to read, so `required` errors
    are extended by the missing names.
    """
    out: set[str] = set()
    for e in errors:
        base = list(e.absolute_path)
        if e.validator == "required" and isinstance(e.instance, dict):
            out.update(_join(base + [name]) for name in e.validator_value if name not in e.instance)
        else:
            out.add(_join(base))
        out |= error_paths(e.context)
    return out


def vectors(name: str) -> list[dict]:
    return json.loads((VECTOR_DIR / f"{name}.json").read_text())["messages"]
