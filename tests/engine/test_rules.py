"""Rule sets: a broken set is rejected whole with exact paths; good sets compile and index."""

import copy
import json
from pathlib import Path

import pytest

from microadjust.engine import RuleSetError, compile_rules

ROOT = Path(__file__).resolve().parents[2]
DEMO = json.loads((ROOT / "server" / "microadjust" / "demo" / "rules.json").read_text())


def rule(**over):
    base = {"id": "r", "when": {">=": [{"var": "session.scroll.depth"}, 50]}, "target": {"slot": "cta"}, "ops": [{"op": "show"}]}
    base.update(over)
    return base


def errors_of(doc):
    with pytest.raises(RuleSetError) as info:
        compile_rules(doc)
    return info.value.errors


def test_demo_rules_compile():
    ruleset = compile_rules(DEMO)
    assert ruleset.ids == [r["id"] for r in DEMO["rules"]]


def test_unknown_feature_is_reported_at_the_operation_that_reads_it():
    doc = {"rules": [rule(), rule(id="a"), rule(id="b"), rule(id="c", when={"and": [True, {">": [{"var": "session.scrol.speed"}, 3]}]})]}
    errors = errors_of(doc)
    assert errors == [{"path": "rules[3].when.and[1]", "msg": "unknown feature session.scrol.speed", "hint": "did you mean session.scroll.speed?"}]
    assert "rules[3].when.and[1]: unknown feature session.scrol.speed" in str(RuleSetError(errors))


def test_one_broken_rule_rejects_the_whole_set_and_lists_every_problem():
    doc = {"rules": [rule(), rule(id="r"), rule(id="x", ops=[{"op": "innerHTML", "html": "<b>"}]), rule(id="y", cooldwon=5)]}
    paths = [e["path"] for e in errors_of(doc)]
    assert paths == ["rules[1].id", "rules[2].ops[0].op", "rules[3].cooldwon"]


@pytest.mark.parametrize(
    "bad, path",
    [
        ({"when": {"frobnicate": [1]}}, "rules[0].when"),
        ({"when": {">": [1]}}, "rules[0].when"),
        ({"when": {">": [{"var": "profile.interest.tag.<bad>"}, 1]}}, "rules[0].when"),
        ({"target": {"slot": "cta", "item": "p1"}}, "rules[0].target"),
        ({"target": {"item": "{{event.item}}"}, "ops": [{"op": "setStyle", "prop": "position", "value": "fixed"}]}, "rules[0].ops[0].prop"),
        ({"ops": [{"op": "setAttr", "name": "onclick", "value": "x"}]}, "rules[0].ops[0].name"),
        ({"ttl": -1}, "rules[0].ttl"),
        ({"priority": "high"}, "rules[0].priority"),
        ({"for": 1.5}, "rules[0].for"),
        ({"cooldown": -5}, "rules[0].cooldown"),
        ({"max_per_session": 0}, "rules[0].max_per_session"),
        ({"on": ["hovr"]}, "rules[0].on"),
        ({"hysteresis": 1.5}, "rules[0].hysteresis"),
        ({"experiment": {"name": "x"}}, "rules[0].experiment"),
        ({"ops": [{"op": "setText", "text": "Hi {{profile.nam}}"}]}, "rules[0].ops[0].text"),
        ({"ops": [{"op": "reorder", "by": "price"}]}, "rules[0].ops[0].by"),
        ({"when": {"==": [{"var": "event.item"}, "p1"]}, "for": 1000}, "rules[0].for"),
        ({"id": "has space"}, "rules[0].id"),
    ],
)
def test_invalid_rule_field_is_reported_with_its_path(bad, path):
    doc = {"rules": [rule(**bad)]}
    assert path in [e["path"] for e in errors_of(doc)]


def test_rule_without_when_target_or_ops_is_rejected():
    paths = [e["path"] for e in errors_of({"rules": [{"id": "bare"}]})]
    assert paths == ["rules[0].when", "rules[0].target", "rules[0].ops"]


def test_patch_may_be_given_under_patch_but_not_twice():
    ok = {"rules": [{"id": "p", "when": True, "patch": {"target": {"slot": "a"}, "ops": [{"op": "hide"}], "ttl": 10}}]}
    assert compile_rules(ok).rules[0].ttl == 10
    twice = {"rules": [{"id": "p", "when": True, "ttl": 5, "patch": {"target": {"slot": "a"}, "ops": [{"op": "hide"}]}}]}
    assert [e["path"] for e in errors_of(twice)] == ["rules[0].ttl"]


@pytest.mark.parametrize(
    "doc, path",
    [
        ([], ""),
        ({"rules": "all"}, "rules"),
        ({"rules": [], "version": 2}, "version"),
        ({"rules": [], "settings": {"max_adjustment": 3}}, "settings.max_adjustment"),
        ({"rules": [], "settings": {"half_life_ms": 10}}, "settings.half_life_ms"),
        ({"rules": [], "extra": 1}, "extra"),
    ],
)
def test_invalid_document_is_rejected(doc, path):
    assert [e["path"] for e in errors_of(doc)][0] == path


def test_compile_does_not_mutate_the_document():
    doc = copy.deepcopy(DEMO)
    compile_rules(doc)
    assert doc == DEMO


def test_rules_are_indexed_by_the_features_they_read():
    ruleset = compile_rules(DEMO)
    assert [r.id for r in ruleset.by_feature["profile.top.tag_score"]] == ["recs-by-interest"]
    assert [r.id for r in ruleset.by_kind["hover"]] == ["hover-emphasis"]
    assert [r.id for r in ruleset.by_kind["dwell"]] == ["dwell-discount"]
    assert {r.id for r in ruleset.clock_rules} == {"explore-prompt", "cart-idle-offer"}


def test_reading_an_event_feature_makes_a_rule_fire_per_event_of_any_kind():
    ruleset = compile_rules({"rules": [rule(id="e", when={">=": [{"var": "event.dur"}, 100]})]})
    assert {k: [r.id for r in rules] for k, rules in ruleset.by_kind.items()} == {
        k: ["e"] for k in ("view", "hover", "scroll", "dwell", "click", "custom")
    }
    assert ruleset.state_rules == []


def test_event_rule_requiring_a_literal_value_is_only_looked_at_for_that_value():
    doc = {"rules": [
        rule(id="p1-only", on=["click"], when={"and": [{"==": [{"var": "event.item"}, "p1"]}, {"!": [{"var": "event.rage"}]}]}),
        rule(id="signup", on=["custom"], when={"==": ["signup", {"var": "event.name"}]}),
        rule(id="any-click", on=["click"], when={"!!": [{"var": "event.item"}]}),
    ]}
    ruleset = compile_rules(doc)
    assert [r.id for r in ruleset.event_rules({"k": "click", "item": "p1"})] == ["p1-only", "any-click"]
    assert [r.id for r in ruleset.event_rules({"k": "click", "item": "p2"})] == ["any-click"]
    assert [r.id for r in ruleset.event_rules({"k": "custom", "name": "signup"})] == ["signup"]
    assert [r.id for r in ruleset.event_rules({"k": "custom", "name": "purchase"})] == []


def test_on_limits_an_event_rule_to_the_named_kinds():
    ruleset = compile_rules({"rules": [rule(id="e", on=["click"], when={"var": "event.rage"})]})
    assert [k for k, rules in ruleset.by_kind.items() if rules] == ["click"]


# Every XSS vector whose hostile part a rule author could write (all but the patch id, which the
# engine renders itself from the rule id and target).
XSS = [
    v for v in json.loads((ROOT / "protocol" / "vectors" / "patches" / "xss.json").read_text())["patches"]
    if v["patch"]["id"] == "r1:cta"
]


@pytest.mark.parametrize("vector", XSS, ids=lambda v: v["name"])
def test_rule_that_would_render_an_xss_vector_is_rejected_at_load(vector):
    patch = vector["patch"]
    extra = {k: v for k, v in patch.items() if k not in ("id", "rule", "target", "ops", "ttl", "priority", "cause")}
    raw = {"id": "hostile", "when": True, "target": patch["target"], "ops": patch["ops"], "ttl": patch["ttl"]}
    raw.update(extra)  # unknown patch-level fields (html=...) are unknown rule fields
    with pytest.raises(RuleSetError):
        compile_rules({"rules": [raw]})


def test_validate_rules_returns_errors_instead_of_raising():
    from microadjust.engine import validate_rules

    assert validate_rules(DEMO) == []
    assert validate_rules({"rules": [rule(id="a b")]})[0]["path"] == "rules[0].id"


def test_describe_lists_rules_for_the_admin_api():
    described = compile_rules(DEMO).describe()
    assert described[0] == {
        "id": "hover-emphasis", "description": DEMO["rules"][0]["description"], "priority": 10,
        "kind": "event", "on": ["hover"], "features": ["event.dur", "event.item", "event.phase"],
        "enabled": True, "experiment": None,
    }
    assert json.loads(json.dumps(described)) == described
