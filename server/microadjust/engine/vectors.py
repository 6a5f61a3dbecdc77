"""Running engine vectors (protocol/vectors/engine/*.json; format in protocol/vectors/README.md).

Pure and standard-library only like the rest of the engine, so the Pyodide build (pywasm/) runs
the very same code on the very same files and compares `canonical(run_vector(...))` with the
CPython result. File access is the caller's: it passes the parsed vector and the parsed rules.
"""

from __future__ import annotations

import json

from . import compile_rules, evaluate, feature_values


def canonical(x) -> str:
    """The comparison form of docs/ARCHITECTURE.md: sorted keys, no spaces."""
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def run_vector(vector: dict, rules_doc: dict | None = None) -> list[dict]:
    """Evaluate every step; returns per step the features asked for, the patches, the reverts."""
    ruleset = compile_rules(rules_doc if rules_doc is not None else vector["rules"])
    profile = vector.get("profile")
    outputs = []
    for step in vector["steps"]:
        now = step["now"]
        result = evaluate(profile, step.get("events", []), now, ruleset, step.get("consent", "granted"))
        profile = result["profile"]
        names = sorted((step.get("expect") or {}).get("features", {}))
        outputs.append({
            "features": feature_values(profile, names, now, ruleset),
            "patches": result["patches"],
            "reverts": result["reverts"],
            "changed": result["changed"],
        })
    return outputs


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= 1e-6
    return a == b


def mismatches(vector: dict, outputs: list[dict]) -> list[str]:
    """Differences between a vector's expectations and `outputs`, as readable lines."""
    problems = []
    for i, (step, out) in enumerate(zip(vector["steps"], outputs)):
        expect = step.get("expect") or {}
        where = f"steps[{i}] (now={step['now']})"
        for name, want in sorted(expect.get("features", {}).items()):
            got = out["features"].get(name)
            if not _close(got, want):
                problems.append(f"{where}: feature {name} = {got!r}, expected {want!r}")
        if "patches" in expect:
            want = expect["patches"]
            got = [p["id"] if isinstance(w, str) else p for p, w in zip(out["patches"], want)]
            if len(out["patches"]) != len(want) or got != want:
                shown = [p["id"] for p in out["patches"]]
                problems.append(f"{where}: patches {shown} (full: {canonical(out['patches'])}), expected {canonical(want)}")
        if "reverts" in expect and out["reverts"] != expect["reverts"]:
            problems.append(f"{where}: reverts {out['reverts']}, expected {expect['reverts']}")
        for name in expect.get("changed_includes", []):
            if name not in out["changed"]:
                problems.append(f"{where}: {name} not among changed features {out['changed']}")
    return problems
