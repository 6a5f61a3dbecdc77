"""JsonLogic-style conditions compiled once to Python closures.

The language is the JsonLogic subset product teams need (docs/RULES.md "Operators"), with one
deliberate difference: comparisons are typed. JsonLogic inherits JavaScript's coercions
(`"10" < 9`, `null >= 0` is true); here a comparison between values of different kinds, or with a
missing value, is simply false, which is what a rule author means and what both CPython and
Pyodide compute the same way.

`compile_logic` also records every feature a condition reads (for the rule index) and can build
the *relaxed* twin of a condition used for hysteresis: each `feature <op> number` threshold is
moved by a fraction of itself in the direction that makes the condition easier to keep holding.
"""

from __future__ import annotations

from .features import is_plain_event_field, resolve, suggest

COMPARE = (">", ">=", "<", "<=")
EQUAL = ("==", "===", "!=", "!==")
ARITH = ("+", "-", "*", "/", "%", "min", "max")
OPERATORS = ("var", "and", "or", "!", "!!", "if", "?:", "in") + EQUAL + COMPARE + ARITH


_NUMBER = (int, float)


def _num(x) -> bool:
    # type() rather than isinstance(): bool is an int subclass and must not compare as a number.
    return type(x) in _NUMBER


def _comparable(a, b) -> bool:
    ta, tb = type(a), type(b)
    return (ta in _NUMBER and tb in _NUMBER) or (ta is str and tb is str)


def _equal(a, b) -> bool:
    if _num(a) and _num(b):
        return a == b
    return type(a) is type(b) and a == b


class Reads:
    """Features a compiled expression reads: concrete names and their documented forms."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.docs: set[str] = set()


def compile_logic(node, path: str, errors: list, reads: Reads, relax: float = 0.0, parent: str | None = None):
    """Compile `node` (found at `path`) to fn(ctx) -> value; problems are appended to `errors`."""
    if isinstance(node, list):
        parts = [compile_logic(x, f"{path}[{i}]", errors, reads, 0.0, path) for i, x in enumerate(node)]
        return lambda ctx: [p(ctx) for p in parts]
    if not isinstance(node, dict):
        if node is None or isinstance(node, (bool, int, float, str)):
            return lambda ctx, value=node: value
        errors.append({"path": path, "msg": f"unsupported value {node!r}"})
        return _none
    if len(node) != 1:
        errors.append({"path": path, "msg": "an operation is an object with exactly one operator"})
        return _none
    op, args = next(iter(node.items()))
    if op not in OPERATORS:
        errors.append({"path": path, "msg": f"unknown operator {op!r}"})
        return _none
    if op == "var":
        return _compile_var(args, path, parent if parent is not None else path, errors, reads)
    if not isinstance(args, list):
        args = [args]
    sub = f"{path}.{op}"

    def arg(i: int, r: float = 0.0):
        return compile_logic(args[i], f"{sub}[{i}]", errors, reads, r, path)

    def arity(lo: int, hi: int) -> bool:
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo}..{hi}"
            errors.append({"path": path, "msg": f"{op} takes {want} arguments, got {len(args)}"})
            return False
        return True

    if op in ("and", "or"):
        if not arity(1, 64):
            return _none
        parts = [arg(i, relax) for i in range(len(args))]
        if op == "and":
            def f_and(ctx):
                value = True
                for p in parts:
                    value = p(ctx)
                    if not value:
                        return value
                return value
            return f_and

        def f_or(ctx):
            value = False
            for p in parts:
                value = p(ctx)
                if value:
                    return value
            return value
        return f_or
    if op in ("!", "!!"):
        if not arity(1, 1):
            return _none
        # Under a negation "easier to hold" means the inner condition must be harder to hold.
        p = arg(0, -relax if op == "!" else relax)
        return (lambda ctx: not p(ctx)) if op == "!" else (lambda ctx: bool(p(ctx)))
    if op in ("if", "?:"):
        if not arity(1, 63) or (len(args) > 1 and len(args) % 2 == 0):
            if len(args) > 1 and len(args) % 2 == 0:
                errors.append({"path": path, "msg": f"{op} takes an odd number of arguments"})
            return _none
        parts = [arg(i) for i in range(len(args))]

        def f_if(ctx):
            i = 0
            while i + 1 < len(parts):
                if parts[i](ctx):
                    return parts[i + 1](ctx)
                i += 2
            return parts[-1](ctx) if len(parts) % 2 else None
        return f_if
    if op in EQUAL:
        if not arity(2, 2):
            return _none
        a, b = arg(0), arg(1)
        if op in ("==", "===") and type(args[1]) is str and type(args[0]) is not str:
            # `feature == "literal"`: _equal(x, literal) is true only for a str x equal to it.
            literal = args[1]

            def f_equal_text(ctx):
                x = a(ctx)
                return type(x) is str and x == literal
            return f_equal_text
        if op in ("==", "==="):
            return lambda ctx: _equal(a(ctx), b(ctx))
        return lambda ctx: not _equal(a(ctx), b(ctx))
    if op in COMPARE:
        if not arity(2, 3 if op in ("<", "<=") else 2):
            return _none
        return _compile_compare(op, args, sub, path, errors, reads, relax)
    if op == "in":
        if not arity(2, 2):
            return _none
        a, b = arg(0), arg(1)

        def f_in(ctx):
            x, seq = a(ctx), b(ctx)
            if isinstance(seq, str):
                return isinstance(x, str) and x in seq
            if isinstance(seq, list):
                return any(_equal(x, y) for y in seq)
            return False
        return f_in
    # arithmetic: non-numbers make the result None, so a comparison on it is false
    if not arity(1 if op in ("+", "*", "min", "max", "-") else 2, 64 if op in ("+", "*", "min", "max") else 2):
        return _none
    parts = [arg(i) for i in range(len(args))]

    def f_arith(ctx):
        values = [p(ctx) for p in parts]
        if not all(_num(v) for v in values):
            return None
        if op == "+":
            return sum(values)
        if op == "*":
            out = 1
            for v in values:
                out *= v
            return out
        if op == "-":
            return -values[0] if len(values) == 1 else values[0] - values[1]
        if op in ("/", "%"):
            if values[1] == 0:
                return None
            return values[0] / values[1] if op == "/" else values[0] % values[1]
        return min(values) if op == "min" else max(values)
    return f_arith


def _none(ctx):
    return None


def _compile_var(args, path: str, report_at: str, errors: list, reads: Reads):
    default = None
    if isinstance(args, list):
        if not 1 <= len(args) <= 2:
            errors.append({"path": path, "msg": "var takes a feature name and an optional default"})
            return _none
        name = args[0]
        default = args[1] if len(args) == 2 else None
    else:
        name = args
    found = resolve(name)
    if found is None:
        error = {"path": report_at, "msg": f"unknown feature {name}"}
        hint = suggest(name)
        if hint:
            error["hint"] = f"did you mean {hint}?"
        errors.append(error)
        return _none
    getter, doc = found
    reads.names.add(name)
    reads.docs.add(doc)

    if is_plain_event_field(doc):
        if default is None:
            return getter
        return lambda ctx: default if (value := getter(ctx)) is None else value

    if default is None:  # `default if value is None else value` is then just the value
        def f_var(ctx):
            value = ctx.cache.get(name, _MISSING)
            if value is _MISSING:
                value = ctx.cache[name] = getter(ctx)
            return value
        return f_var

    def f_var_default(ctx):
        value = ctx.cache.get(name, _MISSING)
        if value is _MISSING:
            value = ctx.cache[name] = getter(ctx)
        return default if value is None else value
    return f_var_default


_MISSING = object()  # not in a context's cache yet (None is a value there)


def _is_var(node) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "var" in node


def _loosen(value, direction: int, relax: float):
    """Move a numeric threshold by |value| * relax in `direction` (+1 up, -1 down)."""
    if not relax or not _num(value):
        return value
    return value + direction * abs(value) * relax


_MIRROR = {">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _threshold(op: str, get, limit):
    """fn(ctx) for `get(ctx) <op> limit` with `limit` a number, typed as `ordered` is."""
    if op == ">":
        return lambda ctx: type(x := get(ctx)) in _NUMBER and x > limit
    if op == ">=":
        return lambda ctx: type(x := get(ctx)) in _NUMBER and x >= limit
    if op == "<":
        return lambda ctx: type(x := get(ctx)) in _NUMBER and x < limit
    return lambda ctx: type(x := get(ctx)) in _NUMBER and x <= limit


def _compile_compare(op, args, sub, path, errors, reads, relax):
    nodes = list(args)
    if relax and len(nodes) == 2:
        # feature > t holds more easily with a lower t; t > feature with a higher t.
        down = op in (">", ">=")
        if _is_var(nodes[0]) and _num(nodes[1]):
            nodes[1] = _loosen(nodes[1], -1 if down else 1, relax)
        elif _is_var(nodes[1]) and _num(nodes[0]):
            nodes[0] = _loosen(nodes[0], 1 if down else -1, relax)
    elif relax and len(nodes) == 3 and _is_var(nodes[1]):
        nodes[0] = _loosen(nodes[0], -1, relax) if _num(nodes[0]) else nodes[0]
        nodes[2] = _loosen(nodes[2], 1, relax) if _num(nodes[2]) else nodes[2]
    parts = [compile_logic(n, f"{sub}[{i}]", errors, reads, 0.0, path) for i, n in enumerate(nodes)]
    strict = op in (">", "<")
    greater = op in (">", ">=")

    def ordered(a, b) -> bool:
        if not _comparable(a, b):
            return False
        if greater:
            return a > b if strict else a >= b
        return a < b if strict else a <= b

    if len(parts) == 2:
        a, b = parts
        # `feature <op> number` (and `number <op> feature`), the usual threshold: with one side a
        # number literal, `ordered` reduces to "the other side is a number too, and compare".
        if _num(nodes[1]) and not _num(nodes[0]):
            return _threshold(op, a, nodes[1])
        if _num(nodes[0]) and not _num(nodes[1]):
            # `t < x` is `x > t` for numbers (NaN included: both false), so the mirrored operator.
            return _threshold(_MIRROR[op], b, nodes[0])
        return lambda ctx: ordered(a(ctx), b(ctx))
    a, b, c = parts
    return lambda ctx: ordered(a(ctx), b(ctx)) and ordered(b(ctx), c(ctx))
