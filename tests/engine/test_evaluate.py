"""evaluate(): purity, guards, the rule index, and robustness on any valid event stream."""

import ast
import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microadjust.engine import compile_rules, evaluate, new_profile, validate_patch
from microadjust.engine.profile import decayed

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "server" / "microadjust" / "engine"
DEMO = compile_rules(json.loads((ROOT / "server" / "microadjust" / "demo" / "rules.json").read_text()))
T = 1_732_262_400_000
ITEMS = [{"key": f"p{i}", "tags": tags, "slot": "grid"} for i, tags in enumerate(
    [["sneakers"], ["watches", "luxury"], ["bags"], ["sale", "sneakers"]], start=1)]


def view(seq=1):
    return {"k": "view", "ts": T, "seq": seq, "url": "/", "items": ITEMS}


def test_engine_imports_only_the_standard_library():
    allowed = {"__future__", "re", "math", "json", "hashlib", "difflib"}
    for path in ENGINE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"


def test_evaluate_never_mutates_its_inputs():
    first = evaluate(None, [view()], T, DEMO)["profile"]
    profile = copy.deepcopy(first)
    events = [{"k": "hover", "ts": T, "seq": 2, "item": "p2", "dur": 2000, "phase": "intent"}]
    frozen = copy.deepcopy(events)
    evaluate(profile, events, T + 1000, DEMO)
    assert profile == first
    assert events == frozen


def test_profile_is_plain_json_with_rounded_floats():
    events = [view(), {"k": "dwell", "ts": T, "seq": 2, "item": "p2", "ms": 3333}]
    profile = evaluate(None, events, T, DEMO)["profile"]
    later = evaluate(profile, [{"k": "click", "ts": T, "seq": 3, "item": "p2"}], T + 12345, DEMO)["profile"]
    assert json.loads(json.dumps(later)) == later
    score, _ = later["v"]["interest"]["tag"]["luxury"]
    assert score == round(score, 6)


def test_decay_halves_interest_after_one_half_life():
    assert decayed([8.0, T], T + 1_800_000, 1_800_000) == 4.0
    assert decayed([8.0, T], T + 3_600_000, 1_800_000) == 2.0
    assert decayed([8.0, T], T, 1_800_000) == 8.0


def test_new_profile_and_none_are_the_same_starting_point():
    a = evaluate(None, [view()], T, DEMO)
    b = evaluate(new_profile(), [view()], T, DEMO)
    assert a == b


def test_unknown_event_kind_changes_nothing_but_is_not_an_error():
    profile = evaluate(None, [view()], T, DEMO)["profile"]
    result = evaluate(profile, [{"k": "form", "ts": T, "seq": 2, "field": "email"}], T + 1, DEMO)
    assert result["patches"] == []
    assert result["profile"]["v"] == profile["v"]


def test_batch_reevaluates_only_rules_whose_inputs_changed():
    tags = [f"t{i}" for i in range(300)]
    doc = {"rules": [
        {"id": f"r{i}", "when": {">=": [{"var": f"profile.interest.tag.{tag}"}, 5]}, "target": {"slot": f"s{i}"}, "ops": [{"op": "show"}]}
        for i, tag in enumerate(tags)
    ]}
    ruleset = compile_rules(doc)
    calls = []
    for rule in ruleset.rules:
        original = rule.when
        rule.when = (lambda f, rid: lambda ctx: calls.append(rid) or f(ctx))(original, rule.id)
    page = {"k": "view", "ts": T, "seq": 1, "url": "/", "items": [{"key": "x", "tags": ["t7", "t42"]}]}
    profile = evaluate(None, [page], T, ruleset)["profile"]
    calls.clear()
    evaluate(profile, [{"k": "click", "ts": T, "seq": 2, "item": "x"}], T + 1, ruleset)
    assert sorted(calls) == ["r42", "r7"]


def test_removed_rule_withdraws_its_showing_patch():
    keep = {"id": "keep", "when": {">=": [{"var": "session.scroll.depth"}, 10]}, "target": {"slot": "a"}, "ops": [{"op": "show"}]}
    gone = {"id": "gone", "when": {">=": [{"var": "session.scroll.depth"}, 10]}, "target": {"slot": "b"}, "ops": [{"op": "show"}]}
    first = evaluate(None, [{"k": "scroll", "ts": T, "seq": 1, "depth": 20, "speed": 100}], T, compile_rules({"rules": [keep, gone]}))
    assert [p["id"] for p in first["patches"]] == ["gone:b", "keep:a"]
    second = evaluate(first["profile"], [], T + 1000, compile_rules({"rules": [keep]}))
    assert second["reverts"] == ["gone:b"]
    assert second["patches"] == []


def test_denied_consent_learns_nothing():
    profile = evaluate(None, [view()], T, DEMO)["profile"]
    result = evaluate(profile, [{"k": "click", "ts": T, "seq": 2, "item": "p1"}], T + 5, DEMO, consent="denied")
    assert result["profile"] == profile
    assert result["patches"] == [] and result["changed"] == []


def test_min_display_keeps_a_lower_priority_rule_off_a_fresh_patch():
    a = {"id": "a", "when": {">=": [{"var": "session.scroll.depth"}, 10]}, "target": {"slot": "cta"}, "ops": [{"op": "setText", "text": "A"}], "min_display": 5000}
    b = {"id": "b", "when": {">=": [{"var": "session.scroll.depth"}, 50]}, "target": {"slot": "cta"}, "ops": [{"op": "setText", "text": "B"}]}
    ruleset = compile_rules({"rules": [a, b]})
    r1 = evaluate(None, [{"k": "scroll", "ts": T, "seq": 1, "depth": 20, "speed": 100}], T, ruleset)
    assert [p["id"] for p in r1["patches"]] == ["a:cta"]
    r2 = evaluate(r1["profile"], [{"k": "scroll", "ts": T, "seq": 2, "depth": 60, "speed": 100}], T + 1000, ruleset)
    assert r2["patches"] == [] and r2["reverts"] == []
    r3 = evaluate(r2["profile"], [{"k": "scroll", "ts": T, "seq": 3, "depth": 70, "speed": 100}], T + 6000, ruleset)
    assert [p["id"] for p in r3["patches"]] == ["b:cta"]
    assert r3["reverts"] == ["a:cta"]


# --- property: any stream of valid events (PROTOCOL §3.1) -------------------------------------

keys = st.sampled_from(["p1", "p2", "p3", "p4", "r1", "zz"])
tag_lists = st.lists(st.sampled_from(["sneakers", "watches", "luxury", "bags", "sale"]), max_size=3, unique=True)
events = st.one_of(
    st.builds(lambda i, t: {"k": "hover", "item": i, "tags": t, "dur": 2000, "phase": "intent"}, keys, tag_lists),
    st.builds(lambda i, d: {"k": "hover", "item": i, "dur": d, "phase": "end"}, keys, st.integers(0, 10**6)),
    st.builds(lambda d, s: {"k": "scroll", "depth": d, "speed": s}, st.integers(0, 100), st.integers(0, 10**6)),
    st.builds(lambda i, m: {"k": "dwell", "item": i, "ms": m}, keys, st.integers(0, 10**7)),
    st.builds(lambda s, m: {"k": "dwell", "slot": s, "ms": m}, st.sampled_from(["sec-1", "sec-2"]), st.integers(0, 10**6)),
    st.builds(lambda i, r: {"k": "click", "item": i, "rage": r}, keys, st.booleans()),
    st.builds(lambda u: {"k": "view", "url": u, "items": ITEMS}, st.sampled_from(["/", "/article", "/shop"])),
    st.builds(lambda n, i, q: {"k": "custom", "name": n, "props": {"item": i, "qty": q}},
              st.sampled_from(["add_to_cart", "remove_from_cart", "purchase", "begin_checkout", "signup"]), keys, st.integers(-3, 5)),
)
batches = st.lists(st.tuples(st.integers(0, 120_000), st.lists(events, max_size=6), st.sampled_from(["granted", "granted", "denied"])), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_any_valid_stream_yields_valid_patches_and_a_json_profile(stream):
    profile, now, seq = None, T, 0
    for gap, evs, consent in stream:
        now += gap
        batch = []
        for e in evs:
            seq += 1
            batch.append(dict(e, ts=now, seq=seq))
        snapshot = copy.deepcopy(profile)
        result = evaluate(profile, batch, now, DEMO, consent)
        assert profile == snapshot
        assert evaluate(profile, batch, now, DEMO, consent) == result  # deterministic
        for patch in result["patches"]:
            assert validate_patch(patch) == []
        ids = [p["id"] for p in result["patches"]]
        assert len(ids) == len(set(ids))
        assert result["profile"]["s"]["adj"] <= 5
        json.dumps(result["profile"], allow_nan=False)
        profile = result["profile"]


def test_damaged_stored_profile_is_repaired_not_fatal():
    good = evaluate(None, [view(), {"k": "click", "ts": T, "seq": 2, "item": "p2"}], T, DEMO)["profile"]
    damaged = copy.deepcopy(good)
    damaged["s"]["active"] = ["not", "a", "dict"]
    damaged["s"]["scroll"] = {"depth": "deep"}
    damaged["v"]["recent"] = None
    damaged["s"]["start"] = "yesterday"
    result = evaluate(damaged, [{"k": "scroll", "ts": T, "seq": 3, "depth": 40, "speed": 200}], T + 1000, DEMO)
    assert result["profile"]["s"]["scroll"]["depth"] == 40
    assert result["profile"]["v"]["interest"] == good["v"]["interest"]  # what was intact is kept
    assert evaluate("garbage", [], T, DEMO)["profile"] == evaluate(None, [], T, DEMO)["profile"]


def test_until_ends_a_state_patch_and_keeps_it_from_firing_again():
    rule = {"id": "promo", "when": {">=": [{"var": "session.scroll.depth"}, 10]}, "until": {">=": [{"var": "session.click.count"}, 1]},
            "cooldown": 0, "min_display": 0, "target": {"slot": "promo"}, "ops": [{"op": "show"}]}
    ruleset = compile_rules({"rules": [rule]})
    r1 = evaluate(None, [{"k": "scroll", "ts": T, "seq": 1, "depth": 20, "speed": 100}], T, ruleset)
    assert [p["id"] for p in r1["patches"]] == ["promo:promo"]
    r2 = evaluate(r1["profile"], [{"k": "click", "ts": T, "seq": 2, "el": "a#buy"}], T + 1000, ruleset)
    assert r2["reverts"] == ["promo:promo"] and r2["patches"] == []
    r3 = evaluate(r2["profile"], [{"k": "scroll", "ts": T, "seq": 3, "depth": 40, "speed": 100}], T + 2000, ruleset)
    assert r3["patches"] == [] and r3["reverts"] == []


def test_wrongly_typed_event_numbers_count_as_zero_instead_of_failing_the_batch():
    events = [view(), {"k": "scroll", "ts": T, "seq": 2, "depth": "99", "speed": float("nan")},
              {"k": "dwell", "ts": T, "seq": 3, "item": "p1", "ms": None}, {"k": "hover", "ts": T, "seq": 4, "item": "p1", "dur": [1], "phase": "end"}]
    profile = evaluate(None, events, T, DEMO)["profile"]
    # A speed of 0 is "not timed": it leaves the speed average untouched (profile.py, scroll).
    assert profile["s"]["scroll"] == {"depth": 0, "speed": 0.0, "n": 0}
    assert profile["s"]["dwell"]["count"] == 1


def test_events_that_are_not_event_objects_are_refused_with_their_index():
    import pytest

    with pytest.raises(TypeError, match=r"events\[1\]"):
        evaluate(None, [view(), "hover"], T, DEMO)
