"""Every engine vector (protocol/vectors/engine/*.json) holds in CPython, step by step.

The Pyodide build runs the same files through the same `microadjust.engine.vectors` code and
compares canonical JSON; here the expectations themselves are checked.
"""

import json
from pathlib import Path

import pytest

from microadjust.engine.vectors import canonical, mismatches, run_vector

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "protocol" / "vectors" / "engine").glob("*.json"))


def load(path: Path):
    vector = json.loads(path.read_text())
    rules = json.loads((ROOT / vector["rules_file"]).read_text()) if "rules_file" in vector else None
    return vector, rules


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_produces_the_expected_features_patches_and_reverts(path):
    vector, rules = load(path)
    outputs = run_vector(vector, rules)
    assert mismatches(vector, outputs) == []


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_output_is_deterministic_and_plain_json(path):
    vector, rules = load(path)
    first = canonical(run_vector(vector, rules))
    assert canonical(run_vector(vector, rules)) == first
    assert json.loads(first) is not None


def test_vector_files_are_well_formed():
    assert len(FILES) >= 10
    for path in FILES:
        vector, _ = load(path)
        assert vector["name"] == path.stem
        assert vector["description"]
        assert ("rules" in vector) != ("rules_file" in vector)
        for step in vector["steps"]:
            assert isinstance(step["now"], int)
