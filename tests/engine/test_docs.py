"""The engine's docs stay true to the code: every feature, setting and demo rule is documented,
and every shipped example rule is exercised by an engine vector."""

import json
from pathlib import Path

from microadjust.engine import FEATURES, OPS, SETTINGS_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
FEATURES_MD = (ROOT / "docs" / "FEATURES.md").read_text()
RULES_MD = (ROOT / "docs" / "RULES.md").read_text()
DEMO = json.loads((ROOT / "server" / "microadjust" / "demo" / "rules.json").read_text())
VECTORS = [json.loads(p.read_text()) for p in sorted((ROOT / "protocol" / "vectors" / "engine").glob("*.json"))]


def test_every_feature_is_documented_in_features_md():
    missing = [name for name in FEATURES if f"`{name}`" not in FEATURES_MD]
    assert missing == []


def test_every_setting_and_op_is_documented_in_rules_md():
    assert [k for k in SETTINGS_DEFAULTS if f"`{k}`" not in RULES_MD] == []
    assert [op for op in OPS if f"`{op}`" not in RULES_MD] == []


def test_every_shipped_example_rule_is_documented_and_fires_in_a_vector():
    fired = set()
    for vector in VECTORS:
        if vector.get("rules_file") != "server/microadjust/demo/rules.json":
            continue
        for step in vector["steps"]:
            for patch in step.get("expect", {}).get("patches", []):
                pid = patch if isinstance(patch, str) else patch["id"]
                fired.add(pid.split(":")[0])
    ids = [rule["id"] for rule in DEMO["rules"]]
    assert [i for i in ids if f"`{i}`" not in RULES_MD] == []
    assert [i for i in ids if i not in fired] == []
