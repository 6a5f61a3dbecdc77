"""The pure engine: profiles, rules, guards and the patch vocabulary (no I/O, no clock).

Standard library only, so the same code runs in CPython on the server and under Pyodide
(pywasm/). The contract is fixed in docs/ARCHITECTURE.md:

    ruleset = compile_rules(doc)        # raises RuleSetError(.errors = [{"path", "msg"}])
    result = evaluate(profile, events, now, ruleset, consent="granted")
    # -> {"profile": {...}, "patches": [...], "reverts": [...], "changed": [...]}

`validate_patch(patch)` is the server's last check on anything it sends (PROTOCOL §5.1), and
`FEATURES` is the documented feature namespace rules may read (docs/FEATURES.md).
"""

from .evaluate import evaluate, patch_id, rank_page_items
from .features import FEATURES, snapshot
from .patches import OPS, STYLE_PROPS, validate_patch
from .profile import new_profile
from .rules import RuleSet, RuleSetError, SETTINGS_DEFAULTS, compile_rules, validate_rules


def feature_values(profile: dict | None, names, now: int, ruleset: RuleSet | None = None) -> dict:
    """Current values of the named features for a stored profile (simulator, admin API, vectors)."""
    from .profile import normalise

    half_life = (ruleset.settings if ruleset is not None else SETTINGS_DEFAULTS)["half_life_ms"]
    return snapshot(normalise(profile), now, half_life, names)


__all__ = [
    "compile_rules",
    "evaluate",
    "feature_values",
    "new_profile",
    "patch_id",
    "rank_page_items",
    "validate_patch",
    "validate_rules",
    "FEATURES",
    "OPS",
    "STYLE_PROPS",
    "RuleSet",
    "RuleSetError",
    "SETTINGS_DEFAULTS",
]
