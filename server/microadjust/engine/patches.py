"""The closed patch vocabulary (PROTOCOL §5, §5.1) and the server's validation of it.

A patch is data, never code. `validate_patch` is the server's defence: every patch the engine
renders passes through it before it leaves the process, and `compile_rules` runs it over each
rule's patch (with placeholder values for templates) so a rule that could render a forbidden op
is rejected when it is loaded, not when a visitor triggers it. `protocol/schema/patch.schema.json`
states the same rules as JSON Schema for the JavaScript patcher; `protocol/vectors/patches/`
holds the shared valid, invalid and XSS vectors that prove both agree.
"""

from __future__ import annotations

import hashlib
import json
import re

# §5.1: class names are plain tokens, so they can never smuggle a selector or a quote.
CLASS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# Slot names and template ids are page-defined identifiers.
SLOT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
TEMPLATE_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
TEMPLATE_SLOT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
# Item keys come from `data-ma-item`; they are matched by attribute value, never parsed as HTML.
ITEM_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}\Z")
RULE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
EXP_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
# `aria-*` and `data-*` carry no behaviour in any browser; `data-ma-*` is reserved for the
# markup contract (the patcher finds items and slots by it), so rules may not rewrite it.
ATTR_NAME_RE = re.compile(r"^(aria-[a-z]+(-[a-z]+)*|data-[a-z0-9]+(-[a-z0-9]+)*|title|hidden)\Z")

MAX_TEXT = 512
MAX_TITLE = 128
MAX_ATTR_VALUE = 512
MAX_STYLE_VALUE = 128
MAX_SELECTOR = 256
MAX_KEYS = 200
MAX_OPS = 16
MAX_ID = 256
MAX_TTL = 86_400_000  # one day: a patch is a micro-adjustment, not a redesign
MAX_PRIORITY = 1000

# Style properties a micro-adjustment may touch. None of them accepts a URL or runs code, and
# none of them is `position`/`display`-like, which would let a rule restructure the page.
STYLE_PROPS = (
    "background-color",
    "border-color",
    "border-radius",
    "border-style",
    "border-width",
    "box-shadow",
    "color",
    "font-size",
    "font-style",
    "font-weight",
    "letter-spacing",
    "line-height",
    "opacity",
    "order",
    "outline",
    "outline-color",
    "outline-offset",
    "outline-style",
    "outline-width",
    "text-decoration",
    "text-transform",
    "transform",
    "transition",
    "visibility",
)
# §5.1: style values may not contain `url(`, `expression(`, `javascript:` or a backslash (CSS
# escapes would hide the first three). The character class also keeps out quotes, `;`, braces
# and `<`, so a value can never close the declaration it is written into.
STYLE_VALUE_RE = re.compile(r"^[A-Za-z0-9 #%.,()+_/*-]{0,128}\Z")
STYLE_VALUE_FORBIDDEN = ("url(", "expression(", "javascript:", "image(", "image-set(", "element(")

# Text is written with textContent and is therefore inert, but a patch carrying markup is
# always a mistake or an attack: refusing it keeps hostile strings out of logs, dashboards and
# any integrator's subscribe() callback that might use innerHTML.
# Browsers ignore tabs and newlines inside URL schemes ("java\tscript:"), so whitespace between
# the letters does not disguise one.
MARKUP_RE = re.compile(r"<\s*[A-Za-z!/?]|j\s*a\s*v\s*a\s*s\s*c\s*r\s*i\s*p\s*t\s*:|&#|&[A-Za-z]+;", re.IGNORECASE)
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
SELECTOR_FORBIDDEN_RE = re.compile(r"[<{};\\`]|url\(|javascript:|expression\(", re.IGNORECASE)

NOTIFY_KINDS = ("toast", "slidein", "badge")
TEMPLATE_WHERE = ("append", "prepend", "replace")

# op -> (required fields, optional fields)
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "addClass": (("class",), ()),
    "removeClass": (("class",), ()),
    "setText": (("text",), ()),
    "setStyle": (("prop", "value"), ()),
    "setAttr": (("name", "value"), ()),
    "reorder": (("keys",), ()),
    "show": ((), ()),
    "hide": ((), ()),
    "template": (("id",), ("slots", "where")),
    "notify": (("kind", "text"), ("title",)),
}

PATCH_FIELDS = ("id", "rule", "target", "ops", "ttl", "priority", "cause", "exp")
PATCH_REQUIRED = ("id", "rule", "target", "ops", "ttl", "priority", "cause")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_text(value: object, path: str, errors: list, limit: int = MAX_TEXT) -> None:
    """Plain text for textContent: a string, bounded, no markup, no invisible control chars."""
    if not isinstance(value, str):
        errors.append({"path": path, "msg": "expected a string"})
    elif len(value) > limit:
        errors.append({"path": path, "msg": f"longer than {limit} characters"})
    elif CONTROL_RE.search(value):
        errors.append({"path": path, "msg": "contains control or bidi-override characters"})
    elif MARKUP_RE.search(value):
        errors.append({"path": path, "msg": "looks like markup or a script URL; patches carry plain text"})


def check_target(target: object, path: str, errors: list) -> None:
    """§5: exactly one of slot, item, sel."""
    if not isinstance(target, dict):
        errors.append({"path": path, "msg": "expected an object with exactly one of slot, item, sel"})
        return
    keys = sorted(target)
    if len(keys) != 1 or keys[0] not in ("slot", "item", "sel"):
        errors.append({"path": path, "msg": "expected exactly one of slot, item, sel"})
        return
    kind = keys[0]
    value = target[kind]
    sub = f"{path}.{kind}"
    if not isinstance(value, str):
        errors.append({"path": sub, "msg": "expected a string"})
    elif kind == "slot" and not SLOT_RE.match(value):
        errors.append({"path": sub, "msg": "slot name must match [A-Za-z0-9_-]{1,64}"})
    elif kind == "item" and not ITEM_KEY_RE.match(value):
        errors.append({"path": sub, "msg": "item key must match [A-Za-z0-9_.:/-]{1,128}"})
    elif kind == "sel":
        if not value.strip() or len(value) > MAX_SELECTOR:
            errors.append({"path": sub, "msg": f"selector must be 1..{MAX_SELECTOR} characters"})
        elif SELECTOR_FORBIDDEN_RE.search(value) or CONTROL_RE.search(value):
            errors.append({"path": sub, "msg": "selector contains a forbidden character or function"})


def check_op(op: object, path: str, errors: list) -> None:
    """One operation of the closed vocabulary (§5.1)."""
    if not isinstance(op, dict):
        errors.append({"path": path, "msg": "expected an operation object"})
        return
    name = op.get("op")
    if name not in OPS:
        errors.append({"path": f"{path}.op", "msg": f"unknown op {name!r}; allowed: {', '.join(OPS)}"})
        return
    required, optional = OPS[name]
    for field in required:
        if field not in op:
            errors.append({"path": f"{path}.{field}", "msg": f"{name} requires {field}"})
    for field in sorted(op):
        if field != "op" and field not in required and field not in optional:
            errors.append({"path": f"{path}.{field}", "msg": f"unknown field for {name}"})
    if any(e["path"].startswith(path + ".") for e in errors):
        return
    if name in ("addClass", "removeClass"):
        value = op["class"]
        if not isinstance(value, str) or not CLASS_RE.match(value):
            errors.append({"path": f"{path}.class", "msg": "class must match [A-Za-z0-9_-]{1,64}"})
    elif name == "setText":
        check_text(op["text"], f"{path}.text", errors)
    elif name == "setStyle":
        prop, value = op["prop"], op["value"]
        if prop not in STYLE_PROPS:
            errors.append({"path": f"{path}.prop", "msg": f"style property {prop!r} is not whitelisted"})
        if not isinstance(value, str):
            errors.append({"path": f"{path}.value", "msg": "expected a string"})
        else:
            low = value.lower().replace(" ", "")
            if any(bad in low for bad in STYLE_VALUE_FORBIDDEN) or not STYLE_VALUE_RE.match(value):
                errors.append(
                    {"path": f"{path}.value", "msg": "style value has a forbidden character or function"}
                )
    elif name == "setAttr":
        attr, value = op["name"], op["value"]
        if not isinstance(attr, str) or not ATTR_NAME_RE.match(attr) or attr.startswith("data-ma-"):
            errors.append(
                {"path": f"{path}.name", "msg": "attribute must be aria-*, data-* (not data-ma-*), title or hidden"}
            )
        if isinstance(value, bool):
            pass  # hidden=true/false
        else:
            check_text(value, f"{path}.value", errors, MAX_ATTR_VALUE)
    elif name == "reorder":
        keys = op["keys"]
        if not isinstance(keys, list) or len(keys) > MAX_KEYS:
            errors.append({"path": f"{path}.keys", "msg": f"expected a list of at most {MAX_KEYS} item keys"})
        else:
            for i, key in enumerate(keys):
                if not isinstance(key, str) or not ITEM_KEY_RE.match(key):
                    errors.append({"path": f"{path}.keys[{i}]", "msg": "item key must match [A-Za-z0-9_.:/-]{1,128}"})
            if len(set(k for k in keys if isinstance(k, str))) != len(keys):
                errors.append({"path": f"{path}.keys", "msg": "keys must be unique"})
    elif name == "template":
        tid = op["id"]
        if not isinstance(tid, str) or not TEMPLATE_ID_RE.match(tid):
            errors.append({"path": f"{path}.id", "msg": "template id must match [A-Za-z][A-Za-z0-9_-]{0,63}"})
        if "where" in op and op["where"] not in TEMPLATE_WHERE:
            errors.append({"path": f"{path}.where", "msg": f"where must be one of {', '.join(TEMPLATE_WHERE)}"})
        if "slots" in op:
            slots = op["slots"]
            if not isinstance(slots, dict) or len(slots) > 16:
                errors.append({"path": f"{path}.slots", "msg": "expected an object of at most 16 text slots"})
            else:
                for key in sorted(slots):
                    if not TEMPLATE_SLOT_RE.match(key):
                        errors.append({"path": f"{path}.slots", "msg": f"slot name {key!r} is not an identifier"})
                    else:
                        check_text(slots[key], f"{path}.slots.{key}", errors)
    elif name == "notify":
        if op["kind"] not in NOTIFY_KINDS:
            errors.append({"path": f"{path}.kind", "msg": f"kind must be one of {', '.join(NOTIFY_KINDS)}"})
        check_text(op["text"], f"{path}.text", errors)
        if "title" in op:
            check_text(op["title"], f"{path}.title", errors, MAX_TITLE)


def check_ops(ops: object, path: str, errors: list) -> None:
    if not isinstance(ops, list) or not 1 <= len(ops) <= MAX_OPS:
        errors.append({"path": path, "msg": f"expected a list of 1..{MAX_OPS} operations"})
        return
    for i, op in enumerate(ops):
        check_op(op, f"{path}[{i}]", errors)


def validate_patch(patch: object) -> list[dict]:
    """Return the list of problems with a rendered patch (§5); empty means it may be sent."""
    errors: list[dict] = []
    if not isinstance(patch, dict):
        return [{"path": "", "msg": "expected a patch object"}]
    for field in PATCH_REQUIRED:
        if field not in patch:
            errors.append({"path": field, "msg": "required"})
    for field in sorted(patch):
        if field not in PATCH_FIELDS:
            errors.append({"path": field, "msg": "unknown patch field"})
    if errors:
        return errors
    pid = patch["id"]
    if not isinstance(pid, str) or not pid or len(pid) > MAX_ID or CONTROL_RE.search(pid):
        errors.append({"path": "id", "msg": f"expected a string of 1..{MAX_ID} printable characters"})
    if not isinstance(patch["rule"], str) or not RULE_ID_RE.match(patch["rule"]):
        errors.append({"path": "rule", "msg": "rule id must match [A-Za-z0-9_.:-]{1,64}"})
    check_target(patch["target"], "target", errors)
    check_ops(patch["ops"], "ops", errors)
    ttl = patch["ttl"]
    if not _is_int(ttl) or not 0 <= ttl <= MAX_TTL:
        errors.append({"path": "ttl", "msg": f"expected an integer 0..{MAX_TTL} (ms, 0 = until unload)"})
    prio = patch["priority"]
    if not _is_int(prio) or not -MAX_PRIORITY <= prio <= MAX_PRIORITY:
        errors.append({"path": "priority", "msg": f"expected an integer -{MAX_PRIORITY}..{MAX_PRIORITY}"})
    cause = patch["cause"]
    if not _is_int(cause) or cause < 0:
        errors.append({"path": "cause", "msg": "expected an integer >= 0 (0 = no causing event)"})
    if "exp" in patch:
        exp = patch["exp"]
        if (
            not isinstance(exp, dict)
            or sorted(exp) != ["id", "variant"]
            or not all(isinstance(exp[k], str) and EXP_NAME_RE.match(exp[k]) for k in ("id", "variant"))
        ):
            errors.append({"path": "exp", "msg": "expected {id, variant} names matching [A-Za-z0-9_.:-]{1,64}"})
    return errors


# Canonical JSON (docs/ARCHITECTURE.md): the same text as json.dumps(x, sort_keys=True,
# separators=(",", ":"), ensure_ascii=False), without building an encoder per call.
_CANON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
canonical_json = _CANON.encode


def patch_id(rule_id: str, target: dict) -> str:
    """Stable per (rule, target) so a re-fire replaces the patch instead of stacking (§5)."""
    kind, value = next(iter(target.items()))
    if kind == "sel":
        # Selectors can be long and full of punctuation; the id only has to be stable and short.
        return f"{rule_id}:sel:{hashlib.sha1(value.encode('utf-8')).hexdigest()[:12]}"
    return f"{rule_id}:{value}"


def patch_sig(target, ops, ttl) -> str:
    """What a showing patch looks like (stored in the session as `sig`; idempotence check)."""
    return hashlib.sha1(canonical_json([target, ops, ttl]).encode("utf-8")).hexdigest()[:12]


def rendered_patch_invalid(patch: dict, target_checked: bool, ops_to_check: tuple) -> bool:
    """`bool(validate_patch(patch))` for a patch rendered from a compiled rule, checking only
    what rendering can change.

    compile_rules already validated the rule id, ttl, priority, the op list's length and every
    part of target and ops that holds no template (by validating the patch rendered with
    placeholders, which leaves such parts as they are). Left to check: the id and cause (they
    come from the event), the target unless `target_checked` (it was static), and the ops at the
    indices `ops_to_check` (templated ones and affinity reorders, whose keys come from the page).
    """
    pid = patch["id"]
    if not isinstance(pid, str) or not pid or len(pid) > MAX_ID or CONTROL_RE.search(pid):
        return True
    cause = patch["cause"]
    if not _is_int(cause) or cause < 0:
        return True
    errors: list = []
    if not target_checked:
        check_target(patch["target"], "target", errors)
        if errors:
            return True
    ops = patch["ops"]
    for j in ops_to_check:
        op = ops[j]
        if type(op) is dict and len(op) == 2 and op.get("op") == "reorder" and "keys" in op:
            # An affinity reorder as evaluate() renders it: of check_op, only the keys' checks
            # can find anything, so they alone are made (without error messages).
            if _reorder_keys_invalid(op["keys"]):
                return True
            continue
        check_op(op, f"ops[{j}]", errors)
        if errors:
            return True
    return False


def _reorder_keys_invalid(keys) -> bool:
    """Whether check_op would report an error for the keys of a reorder op."""
    if not isinstance(keys, list) or len(keys) > MAX_KEYS:
        return True
    match = ITEM_KEY_RE.match
    for key in keys:
        if not isinstance(key, str) or not match(key):
            return True
    return len(set(keys)) != len(keys)  # all strings here, as check_op counts them
