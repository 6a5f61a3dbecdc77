"""The patch vocabulary (PROTOCOL §5.1): validate_patch and patch.schema.json agree on every vector."""

import json
from pathlib import Path

import jsonschema
import pytest

from microadjust.engine import validate_patch

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocol" / "vectors" / "patches"
SCHEMA = json.loads((ROOT / "protocol" / "schema" / "patch.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def load(name):
    return [pytest.param(v, id=v["name"]) for v in json.loads((VECTORS / name).read_text())["patches"]]


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("vector", load("valid.json"))
def test_valid_patch_is_accepted_by_server_and_schema(vector):
    assert validate_patch(vector["patch"]) == []
    assert list(VALIDATOR.iter_errors(vector["patch"])) == []


@pytest.mark.parametrize("vector", load("invalid.json"))
def test_invalid_patch_is_refused_with_the_exact_path(vector):
    errors = validate_patch(vector["patch"])
    assert errors and errors[0]["path"] == vector["path"]
    assert list(VALIDATOR.iter_errors(vector["patch"])) != []


@pytest.mark.parametrize("vector", load("xss.json"))
def test_xss_vector_is_refused_by_server_and_schema(vector):
    assert validate_patch(vector["patch"]) != []
    assert list(VALIDATOR.iter_errors(vector["patch"])) != []


def test_there_are_at_least_fifty_xss_vectors():
    assert len(load("xss.json")) >= 50
