"""CPython's side of the Pyodide parity test (pywasm/test/parity.test.mjs, issue 7).

Runs every engine vector in protocol/vectors/engine/ through the server's engine and prints, per
vector file, the canonical JSON (docs/ARCHITECTURE.md) of
  - `run_vector`: what microadjust.engine.vectors.run_vector returns (features, patches, ...);
  - `steps`: the full `evaluate` result of each step, the profile carried from step to step.
The Node test computes the same two things under Pyodide and compares the texts byte for byte.

    .venv/bin/python pywasm/reference.py [--vectors DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vector_rules(vector: dict, root: Path) -> dict:
    """The rules document a vector runs against: inline `rules` or the repo file `rules_file`."""
    if "rules_file" in vector:
        return json.loads((root / vector["rules_file"]).read_text("utf-8"))
    return vector["rules"]


def step_results(vector: dict, rules_doc: dict) -> list[str]:
    """Canonical `evaluate` results step by step; the Node test mirrors this loop exactly."""
    from microadjust.engine import compile_rules, evaluate
    from microadjust.engine.vectors import canonical

    ruleset = compile_rules(rules_doc)
    profile = vector.get("profile")
    out = []
    for step in vector["steps"]:
        result = evaluate(profile, step.get("events", []), step["now"], ruleset, step.get("consent", "granted"))
        out.append(canonical(result))
        profile = result["profile"]
    return out


def reference(vectors_dir: Path, root: Path) -> dict:
    from microadjust.engine.vectors import canonical, run_vector

    results = {}
    for path in sorted(vectors_dir.glob("*.json")):
        vector = json.loads(path.read_text("utf-8"))
        rules_doc = vector_rules(vector, root)
        results[path.name] = {
            "run_vector": canonical(run_vector(vector, rules_doc)),
            "steps": step_results(vector, rules_doc),
        }
    return {"python": sys.version.split()[0], "vectors": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, default=ROOT / "protocol" / "vectors" / "engine")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    if not args.vectors.is_dir():
        print(f"reference: no vector directory {args.vectors}", file=sys.stderr)
        return 2
    text = json.dumps(reference(args.vectors, ROOT), indent=1) + "\n"
    if args.out:
        args.out.write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
