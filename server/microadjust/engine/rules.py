"""Rule sets: validation with exact error paths, compilation to closures, and the feature index.

`compile_rules(doc)` either returns a `RuleSet` or raises `RuleSetError` listing every problem
(`rules[3].when.and[1]: unknown feature session.scrol.speed`): a broken set is rejected whole so
the caller can keep the last good one live. docs/RULES.md documents every field.

Two kinds of rule come out of compilation:
- *event rules* read `event.*` features (or name event kinds in `on`); they are evaluated once
  per matching event of a batch, right after that event is folded into the profile;
- *state rules* read only profile/session features; they are evaluated once per batch, and only
  when a feature they read changed (the index), a clock feature they read moved, their `for`
  timer is running, or a patch of theirs is showing (hysteresis).
"""

from __future__ import annotations

import re

from .features import is_clock
from .logic import Reads, compile_logic
from .patches import OPS, RULE_ID_RE, check_ops, check_target, patch_id, patch_sig, MAX_PRIORITY, MAX_TTL

EVENT_KINDS = ("view", "hover", "scroll", "dwell", "click", "custom")
RULE_FIELDS = (
    "id", "description", "priority", "when", "on", "for", "cooldown", "max_per_session",
    "target", "ops", "patch", "ttl", "confidence", "until", "hysteresis", "min_display",
    "revert", "experiment", "enabled",
)
SETTINGS_DEFAULTS = {
    "max_adjustments": 5,  # global frequency cap per session (issue 2)
    "cooldown_ms": 10_000,  # default per-rule cooldown
    "min_display_ms": 5_000,  # a patch stays at least this long before hysteresis may revert it
    "hysteresis": 0.1,  # thresholds relax by 10 % while a patch is showing
    "half_life_ms": 1_800_000,  # interest half-life (docs/FEATURES.md "Decay")
}
MAX_RULES = 10_000
MAX_MS = 86_400_000
TEMPLATE_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class RuleSetError(ValueError):
    """A rule set that cannot be used; `.errors` is [{"path", "msg", "hint"?}] in document order."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors
        lines = [f"{e['path']}: {e['msg']}" if e["path"] else e["msg"] for e in errors]
        super().__init__("invalid rule set: " + "; ".join(lines[:20]) + (" ..." if len(lines) > 20 else ""))


class Template:
    """A string with `{{feature}}` holes, compiled; a string that is one hole keeps the value's type."""

    __slots__ = ("parts", "whole")

    def __init__(self, parts: list, whole) -> None:
        self.parts = parts  # [str | getter]
        self.whole = whole  # getter when the string is exactly one hole

    def render(self, ctx):
        if self.whole is not None:
            return self.whole(ctx)
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(_text(p(ctx)))
        return "".join(out)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}".rstrip("0")
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _compile_template(text: str, path: str, errors: list, reads: Reads):
    """A plain string stays a string; a string with holes becomes a Template."""
    if "{{" not in text:
        return text
    parts: list = []
    pos = 0
    for m in TEMPLATE_RE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        getter = compile_logic({"var": m.group(1)}, path, errors, reads, parent=path)
        parts.append(getter)
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    if "{{" in "".join(p for p in parts if isinstance(p, str)):
        errors.append({"path": path, "msg": "unbalanced {{ in template"})
    whole = parts[0] if len(parts) == 1 and not isinstance(parts[0], str) else None
    return Template(parts, whole)


def _compile_value(value, path: str, errors: list, reads: Reads):
    """Templates anywhere inside a patch's JSON (strings in objects and lists)."""
    if isinstance(value, str):
        return _compile_template(value, path, errors, reads)
    if isinstance(value, list):
        return [_compile_value(v, f"{path}[{i}]", errors, reads) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _compile_value(v, f"{path}.{k}", errors, reads) for k, v in value.items()}
    return value


def render_value(value, ctx):
    if isinstance(value, Template):
        return value.render(ctx)
    if isinstance(value, list):
        return [render_value(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, ctx) for k, v in value.items()}
    return value


def _scalar(value) -> bool:
    return not isinstance(value, (Template, list, dict))


def compile_render(value):
    """fn(ctx) equal to `render_value(value, ctx)`, with the walk over `value` done once here.

    Like render_value it returns new lists and dicts on every call (a patch is handed out and
    may be changed by its receiver); a part without templates is copied, not walked.
    """
    if isinstance(value, Template):
        if value.whole is not None:
            return value.whole
        # (text, None) or (None, getter) per part: Template.render without its type test per part.
        parts = [(p, None) if isinstance(p, str) else (None, p) for p in value.parts]
        return lambda ctx: "".join([text if get is None else _text(get(ctx)) for text, get in parts])
    if isinstance(value, list):
        if all(_scalar(v) for v in value):
            return lambda ctx: value.copy()
        parts = [compile_render(v) for v in value]
        return lambda ctx: [part(ctx) for part in parts]
    if isinstance(value, dict):
        if all(_scalar(v) for v in value.values()):
            return lambda ctx: value.copy()
        items = [(k, compile_render(v)) for k, v in value.items()]
        return lambda ctx: {k: part(ctx) for k, part in items}
    return lambda ctx: value


def _has_template(value) -> bool:
    if isinstance(value, Template):
        return True
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


def _placeholder(value):
    """A harmless stand-in for each template hole, to validate a rule's patch at load time."""
    if isinstance(value, Template):
        if value.whole is not None:
            return "x1"
        return "".join(p if isinstance(p, str) else "x1" for p in value.parts)
    if isinstance(value, list):
        return [_placeholder(v) for v in value]
    if isinstance(value, dict):
        return {k: _placeholder(v) for k, v in value.items()}
    return value


class Rule:
    """One compiled rule. Attributes mirror the documented fields (docs/RULES.md)."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"Rule({self.id!r})"


class RuleSet:
    """Compiled rules, their settings and the indexes `evaluate` uses."""

    def __init__(self, rules: list[Rule], settings: dict, doc: dict) -> None:
        self.rules = rules
        self.settings = settings
        self.doc = doc
        self.by_id = {r.id: r for r in rules}
        self.by_feature: dict[str, list[Rule]] = {}
        self.by_kind: dict[str, list[Rule]] = {k: [] for k in EVENT_KINDS}
        # Event rules whose condition requires `event.<field> == "literal"` are only looked at
        # for events carrying that value: (kind, field, value) -> rules. `by_kind` keeps the rest.
        self.by_event_value: dict[tuple, list[Rule]] = {}
        self.event_fields: dict[str, tuple[str, ...]] = {k: () for k in EVENT_KINDS}
        self.clock_rules: list[Rule] = []
        self.state_rules: list[Rule] = []
        for rule in rules:
            if not rule.enabled:
                continue
            if rule.event_bound:
                for kind in rule.on:
                    if rule.event_key is None:
                        self.by_kind[kind].append(rule)
                    else:
                        field, value = rule.event_key
                        self.by_event_value.setdefault((kind, field, value), []).append(rule)
                        if field not in self.event_fields[kind]:
                            self.event_fields[kind] += (field,)
                continue
            self.state_rules.append(rule)
            if rule.clock:
                self.clock_rules.append(rule)
            for name in rule.reads:
                self.by_feature.setdefault(name, []).append(rule)

    def event_rules(self, event: dict) -> list[Rule]:
        """The event rules that can match `event`, in file order."""
        kind = event.get("k")
        rules = self.by_kind.get(kind, ())
        fields = self.event_fields.get(kind, ())
        if not fields:
            return rules
        keyed = list(rules)
        for field in fields:
            value = event.get(field)
            if isinstance(value, str):
                keyed.extend(self.by_event_value.get((kind, field, value), ()))
        if len(keyed) > len(rules):
            keyed.sort(key=lambda r: r.order)
        return keyed

    def describe(self) -> list[dict]:
        """One plain-JSON summary per rule, for the admin API and the CLI."""
        return [
            {
                "id": r.id,
                "description": r.description,
                "priority": r.priority,
                "kind": "event" if r.event_bound else "state",
                "on": list(r.on),
                "features": list(r.features),
                "enabled": r.enabled,
                "experiment": r.experiment,
            }
            for r in self.rules
        ]

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]


INDEXED_EVENT_FIELDS = ("item", "slot", "name", "el", "url")


def _event_key(when) -> tuple[str, str] | None:
    """(field, value) when `when` cannot hold unless event.<field> == value (a literal string)."""
    conjuncts = when["and"] if isinstance(when, dict) and isinstance(when.get("and"), list) and len(when) == 1 else [when]
    for node in conjuncts:
        if not (isinstance(node, dict) and len(node) == 1):
            continue
        op, args = next(iter(node.items()))
        if op not in ("==", "===") or not isinstance(args, list) or len(args) != 2:
            continue
        for a, b in (args, args[::-1]):
            if isinstance(a, dict) and list(a) == ["var"] and isinstance(a["var"], str) and isinstance(b, str):
                field = a["var"][len("event."):] if a["var"].startswith("event.") else None
                if field in INDEXED_EVENT_FIELDS:
                    return field, b
    return None


def _ms(rule: dict, key: str, path: str, errors: list, default: int | None):
    value = rule.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MS:
        errors.append({"path": f"{path}.{key}", "msg": f"expected an integer 0..{MAX_MS} (ms)"})
        return default
    return value


def _settings(doc: dict, errors: list) -> dict:
    settings = dict(SETTINGS_DEFAULTS)
    raw = doc.get("settings", {})
    if not isinstance(raw, dict):
        errors.append({"path": "settings", "msg": "expected an object"})
        return settings
    for key in sorted(raw):
        value = raw[key]
        path = f"settings.{key}"
        if key not in SETTINGS_DEFAULTS:
            errors.append({"path": path, "msg": f"unknown setting; known: {', '.join(SETTINGS_DEFAULTS)}"})
        elif key == "hysteresis":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                errors.append({"path": path, "msg": "expected a number 0 <= h < 1"})
            else:
                settings[key] = float(value)
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > MAX_MS:
            errors.append({"path": path, "msg": f"expected an integer 0..{MAX_MS}"})
        elif key == "half_life_ms" and value < 1_000:
            errors.append({"path": path, "msg": "a half-life under one second would forget everything at once"})
        else:
            settings[key] = value
    return settings


def _compile_rule(raw, i: int, settings: dict, errors: list, seen: dict) -> Rule | None:
    path = f"rules[{i}]"
    if not isinstance(raw, dict):
        errors.append({"path": path, "msg": "expected a rule object"})
        return None
    before = len(errors)
    for key in sorted(raw):
        if key not in RULE_FIELDS:
            errors.append({"path": f"{path}.{key}", "msg": "unknown rule field"})
    rid = raw.get("id")
    if not isinstance(rid, str) or not RULE_ID_RE.match(rid):
        errors.append({"path": f"{path}.id", "msg": "required: a rule id matching [A-Za-z0-9_.:-]{1,64}"})
    elif rid in seen:
        errors.append({"path": f"{path}.id", "msg": f"duplicate rule id {rid!r} (first at rules[{seen[rid]}])"})
    else:
        seen[rid] = i
    desc = raw.get("description", "")
    if not isinstance(desc, str) or len(desc) > 1000:
        errors.append({"path": f"{path}.description", "msg": "expected a string of at most 1000 characters"})
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        errors.append({"path": f"{path}.priority", "msg": f"expected an integer -{MAX_PRIORITY}..{MAX_PRIORITY}"})
        priority = 0
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append({"path": f"{path}.enabled", "msg": "expected true or false"})

    # The patch: top-level target/ops/ttl, or the same three under "patch".
    source, spath = raw, path
    if "patch" in raw:
        source, spath = raw["patch"], f"{path}.patch"
        if not isinstance(source, dict):
            errors.append({"path": spath, "msg": "expected an object with target, ops, ttl"})
            source = {}
        for key in ("target", "ops", "ttl"):
            if key in raw:
                errors.append({"path": f"{path}.{key}", "msg": "give target, ops and ttl either at the top or under patch, not both"})
        for key in sorted(source):
            if key not in ("target", "ops", "ttl"):
                errors.append({"path": f"{spath}.{key}", "msg": "unknown patch field (target, ops, ttl)"})
    reads = Reads()
    when = compile_logic(raw["when"], f"{path}.when", errors, reads) if "when" in raw else None
    if "when" not in raw:
        errors.append({"path": f"{path}.when", "msg": "required: the condition"})
    if "target" not in source:
        errors.append({"path": f"{spath}.target", "msg": "required: {slot}, {item} or {sel}"})
    if "ops" not in source:
        errors.append({"path": f"{spath}.ops", "msg": "required: the operations to apply"})
    target = _compile_value(source.get("target"), f"{spath}.target", errors, reads)
    ops_raw = source.get("ops")
    ops = []
    rank = {}
    if isinstance(ops_raw, list):
        for j, op in enumerate(ops_raw):
            opath = f"{spath}.ops[{j}]"
            if isinstance(op, dict) and op.get("op") == "reorder" and "by" in op:
                # Rule-only form: the engine ranks the page's items (docs/RULES.md "reorder by").
                if op["by"] != "affinity":
                    errors.append({"path": f"{opath}.by", "msg": "only \"affinity\" ranking is supported"})
                if "keys" in op:
                    errors.append({"path": f"{opath}.keys", "msg": "give keys or by, not both"})
                limit = op.get("limit", 200)
                if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 200:
                    errors.append({"path": f"{opath}.limit", "msg": "expected an integer 1..200"})
                for key in sorted(op):
                    if key not in ("op", "by", "limit"):
                        errors.append({"path": f"{opath}.{key}", "msg": "unknown field for reorder by"})
                rank[j] = limit
                ops.append({"op": "reorder", "keys": []})
            else:
                ops.append(_compile_value(op, opath, errors, reads))
    ttl = source.get("ttl", 0)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL:
        errors.append({"path": f"{spath}.ttl", "msg": f"expected an integer 0..{MAX_TTL} (ms, 0 = until the page unloads)"})
        ttl = 0
    # Load-time vocabulary check (§5.1): render with placeholders and validate like a real patch.
    if "target" in source:
        sample_errors: list = []
        check_target(_placeholder(target), "", sample_errors)
        for e in sample_errors:
            errors.append({"path": f"{spath}.target{e['path']}", "msg": e["msg"]})
    if "ops" in source:
        sample_errors = []
        check_ops(_placeholder(ops), "", sample_errors)
        for e in sample_errors:
            errors.append({"path": f"{spath}.ops{e['path']}", "msg": e["msg"]})

    conf_reads = Reads()
    confidence = compile_logic(raw["confidence"], f"{path}.confidence", errors, conf_reads) if "confidence" in raw else None
    until_reads = Reads()
    until = compile_logic(raw["until"], f"{path}.until", errors, until_reads) if "until" in raw else None
    reads.names |= conf_reads.names | until_reads.names
    reads.docs |= conf_reads.docs | until_reads.docs

    on = raw.get("on")
    event_bound = on is not None or any(d.startswith("event.") for d in reads.docs)
    if on is None:
        on = list(EVENT_KINDS) if event_bound else []
    elif not isinstance(on, list) or not on or any(k not in EVENT_KINDS for k in on) or len(set(on)) != len(on):
        errors.append({"path": f"{path}.on", "msg": f"expected a list of distinct event kinds from {', '.join(EVENT_KINDS)}"})
        on = []
    for_ms = _ms(raw, "for", path, errors, None)
    cooldown = _ms(raw, "cooldown", path, errors, settings["cooldown_ms"])
    min_display = _ms(raw, "min_display", path, errors, settings["min_display_ms"])
    if event_bound:
        for key in ("for", "until", "revert", "hysteresis", "min_display"):
            if key in raw:
                errors.append({"path": f"{path}.{key}", "msg": f"{key} applies to state rules only; this rule reads event.* features or has on (it fires per event and ends with its ttl)"})
    max_per_session = raw.get("max_per_session")
    if max_per_session is not None and (
        not isinstance(max_per_session, int) or isinstance(max_per_session, bool) or not 1 <= max_per_session <= 1000
    ):
        errors.append({"path": f"{path}.max_per_session", "msg": "expected an integer 1..1000"})
    hysteresis = raw.get("hysteresis", settings["hysteresis"])
    if not isinstance(hysteresis, (int, float)) or isinstance(hysteresis, bool) or not 0 <= hysteresis < 1:
        errors.append({"path": f"{path}.hysteresis", "msg": "expected a number 0 <= h < 1"})
        hysteresis = 0.0
    # The relaxed twin of `when` that keeps a showing patch alive (hysteresis, logic.py).
    keep = compile_logic(raw["when"], f"{path}.when", [], Reads(), relax=float(hysteresis)) if "when" in raw else None
    revert = raw.get("revert", not event_bound)
    if not isinstance(revert, bool):
        errors.append({"path": f"{path}.revert", "msg": "expected true or false"})
    experiment = raw.get("experiment")
    if experiment is not None:
        ok = isinstance(experiment, str) and RULE_ID_RE.match(experiment)
        ok = ok or (
            isinstance(experiment, dict) and isinstance(experiment.get("id"), str)
            and RULE_ID_RE.match(experiment["id"])
            and all(k in ("id", "variant") for k in experiment)
            and (experiment.get("variant") is None or (isinstance(experiment["variant"], str) and RULE_ID_RE.match(experiment["variant"])))
        )
        if not ok:
            errors.append({"path": f"{path}.experiment", "msg": "expected an experiment id or {id, variant?}"})
    if len(errors) > before:
        return None
    # What rendering can change, for evaluate(): the load-time check above already covers every
    # part without a template, so a rendered patch re-checks only the rest (patches.py
    # rendered_patch_invalid), and a patch with nothing to render has one signature.
    target_static = not _has_template(target)
    ops_to_check = tuple(j for j, op in enumerate(ops) if j in rank or _has_template(op))
    static_sig = patch_sig(target, ops, ttl) if target_static and not ops_to_check else None
    one_target = isinstance(target, dict) and len(target) == 1
    target_value = next(iter(target.values())) if one_target else None
    static_id = patch_id(rid, target) if target_static and isinstance(target_value, str) else None
    # When rendering can only vary the target's one value and affinity reorder keys, those
    # strings alone determine the signature, so evaluate() memoises it (evaluate._sig).
    sig_memo = (
        {}
        if static_sig is None and one_target and all(j in rank for j in ops_to_check)
        and (target_static or isinstance(target_value, Template))
        else None
    )
    return Rule(
        id=rid, order=i, description=desc, priority=priority, enabled=enabled, when=when, keep=keep,
        until=until, confidence=confidence, on=on, event_bound=event_bound, for_ms=for_ms,
        cooldown=cooldown, max_per_session=max_per_session, min_display=min_display,
        hysteresis=hysteresis, revert=revert, target=target, ops=ops, rank=rank, ttl=ttl,
        experiment=experiment, reads=sorted(reads.names), features=sorted(reads.docs),
        event_key=_event_key(raw["when"]) if event_bound else None,
        clock=any(is_clock(d) for d in reads.docs),
        target_static=target_static, ops_to_check=ops_to_check, static_sig=static_sig,
        render_target=compile_render(target), render_ops=compile_render(ops),
        static_id=static_id, sig_memo=sig_memo,
    )


def compile_rules(doc) -> RuleSet:
    """Validate and compile a parsed rules document ({"version"?, "settings"?, "rules": [...]})."""
    errors: list[dict] = []
    if not isinstance(doc, dict):
        raise RuleSetError([{"path": "", "msg": "expected an object with a rules list"}])
    for key in sorted(doc):
        if key not in ("version", "settings", "rules", "description"):
            errors.append({"path": key, "msg": "unknown top-level field (version, description, settings, rules)"})
    if doc.get("version", 1) != 1:
        errors.append({"path": "version", "msg": f"unsupported rules version {doc.get('version')!r}; this engine reads 1"})
    settings = _settings(doc, errors)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        errors.append({"path": "rules", "msg": "required: a list of rules"})
        raise RuleSetError(errors)
    if len(raw_rules) > MAX_RULES:
        errors.append({"path": "rules", "msg": f"at most {MAX_RULES} rules"})
        raise RuleSetError(errors)
    seen: dict = {}
    rules = [_compile_rule(raw, i, settings, errors, seen) for i, raw in enumerate(raw_rules)]
    if errors:
        raise RuleSetError(errors)
    return RuleSet([r for r in rules if r is not None], settings, doc)


def validate_rules(doc) -> list[dict]:
    """The errors compile_rules would raise, or [] when the set is usable."""
    try:
        compile_rules(doc)
    except RuleSetError as exc:
        return exc.errors
    return []


__all__ = ["compile_rules", "validate_rules", "RuleSet", "RuleSetError", "Rule", "render_value", "OPS"]
