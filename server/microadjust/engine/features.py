"""The feature namespace rules read (docs/FEATURES.md is the user-facing copy of `FEATURES`).

A feature name resolves once, at rule-compile time, to a getter over an evaluation context, so
evaluating a rule never parses a name. Names with a dynamic last segment (`profile.interest.tag.
<tag>`) are allowed when the segment matches the documented pattern; anything else is an unknown
feature and the rule set is rejected with the exact path.

Features marked `clock` change with time alone (durations, idle time): rules reading them are
re-evaluated on every batch, including empty "tick" batches, instead of only when an event
touched their inputs.
"""

from __future__ import annotations

import re

from .profile import INTENT_HALF_LIFE_MS, _median, decayed, r6, top_of

TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
ITEM_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}\Z")
PROP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")

# name -> description; types and units are in the text. Patterns end in <...>.
FEATURES: dict[str, dict] = {}


def _doc(name: str, type_: str, unit: str, text: str, clock: bool = False) -> None:
    FEATURES[name] = {"type": type_, "unit": unit, "doc": text, "clock": clock}


_doc("profile.interest.item.<key>", "number", "score", "time-decayed interest in an item (data-ma-item)")
_doc("profile.interest.tag.<tag>", "number", "score", "time-decayed interest in a tag (data-ma-tags)")
_doc("profile.interest.section.<slot>", "number", "score", "time-decayed interest in a content section (a slot dwelled on or hovered)")
_doc("profile.top.tag", "string|null", "", "the tag with the highest decayed interest")
_doc("profile.top.tag_score", "number", "score", "decayed interest of profile.top.tag")
_doc("profile.top.item", "string|null", "", "the item with the highest decayed interest")
_doc("profile.top.item_score", "number", "score", "decayed interest of profile.top.item")
_doc("profile.top.section", "string|null", "", "the section with the highest decayed interest")
_doc("profile.recent.items", "list", "", "the last five items viewed, most recent first")
_doc("profile.recent.count", "integer", "items", "how many items are in profile.recent.items (0..5)")
_doc("profile.recent.last", "string|null", "", "the most recently viewed item")
_doc("profile.recent.tag.<tag>", "integer", "items", "how many of the last five items carry the tag")
_doc("profile.cart.count", "integer", "units", "units in the cart (add_to_cart minus remove_from_cart, emptied by purchase)")
_doc("profile.cart.items", "list", "", "item keys in the cart, sorted")
_doc("profile.cart.since_add", "integer|null", "ms", "time since the last add_to_cart, null when the cart is empty", clock=True)
_doc("profile.purchases", "integer", "", "purchase goal events seen for this visitor")
_doc("profile.intent.state", "string", "", "browsing, considering or purchasing")
_doc("profile.intent.since", "integer", "ms", "time spent in the current intent state", clock=True)
_doc("profile.intent.consider", "number", "evidence", "decayed evidence of comparing/considering items", clock=True)
_doc("profile.intent.purchase", "number", "evidence", "decayed evidence of buying (cart, checkout)", clock=True)
_doc("session.duration", "integer", "ms", "time since the session's first event", clock=True)
_doc("session.views", "integer", "", "page views in this session")
_doc("session.page.url", "string|null", "", "path of the current page (last view event)")
_doc("session.page.duration", "integer", "ms", "time since the current page's view event", clock=True)
_doc("session.page.items", "integer", "items", "tracked items the current page listed")
_doc("session.scroll.depth", "integer", "%", "deepest scroll position on the current page (0..100)")
_doc("session.scroll.speed", "number", "px/s", "scroll speed, winsorised EWMA (alpha 0.3)")
_doc("session.read.depth", "integer", "%", "deepest position reached at reading speed (scroll speed EWMA <= 1200 px/s)")
_doc("session.dwell.median", "number", "ms", "median of the last 7 dwells (capped at 120 s each)")
_doc("session.dwell.count", "integer", "", "dwell events this session")
_doc("session.dwell.total", "integer", "ms", "total dwell time this session")
_doc("session.hover.count", "integer", "", "hovers that reached the intent threshold this session")
_doc("session.click.count", "integer", "", "clicks this session")
_doc("session.click.rate", "number", "clicks/min", "clicks per minute of session (at least one minute counted)", clock=True)
_doc("session.click.rage", "integer", "", "rage clicks this session")
_doc("session.idle.ms", "integer", "ms", "time since the last event (grows during tick batches)", clock=True)
_doc("session.idle.ratio", "number", "0..1", "share of the session spent in silences longer than 10 s", clock=True)
_doc("session.adjustments", "integer", "", "patches sent this session (the global cap counts these)")
for _name, _type, _text in (
    ("k", "string", "event kind (view, hover, scroll, dwell, click, custom)"),
    ("seq", "integer", "event sequence number"),
    ("item", "string|null", "the element's data-ma-item"),
    ("slot", "string|null", "the element's data-ma-slot"),
    ("el", "string|null", "short descriptor of an untagged element"),
    ("tags", "list", "the item's tags (from the event or the page's view items)"),
    ("dur", "integer|null", "hover duration (ms)"),
    ("phase", "string|null", "hover phase: intent or end"),
    ("ms", "integer|null", "dwell time (ms)"),
    ("depth", "integer|null", "scroll depth (%)"),
    ("speed", "number|null", "scroll speed (px/s) as sent"),
    ("dir", "string|null", "scroll direction"),
    ("url", "string|null", "view url"),
    ("title", "string|null", "view title"),
    ("name", "string|null", "custom event name (goal)"),
    ("rage", "boolean", "rage click"),
    ("dead", "boolean", "dead click"),
):
    _doc(f"event.{_name}", _type, "", _text)
_doc("event.props.<key>", "scalar|null", "", "a property of a custom event")

CLOCK = frozenset(name for name, d in FEATURES.items() if d["clock"])


class Context:
    """What a rule sees while it is evaluated: the working profile, `now`, the current event."""

    __slots__ = ("v", "s", "now", "hl", "event", "cache")

    def __init__(self, work: dict, now: int, half_life: int, event: dict | None = None) -> None:
        self.v = work["v"]
        self.s = work["s"]
        self.now = now
        self.hl = half_life
        self.event = event
        self.cache: dict = {}


def _interest(kind: str, key: str):
    def get(ctx: Context) -> float:
        return r6(decayed(ctx.v["interest"][kind].get(key), ctx.now, ctx.hl))
    return get


def _top(kind: str, want_score: bool):
    def get(ctx: Context):
        memo = ("top", kind)
        if memo not in ctx.cache:
            ctx.cache[memo] = top_of(ctx.v["interest"][kind], ctx.now, ctx.hl)
        best, score = ctx.cache[memo]
        return score if want_score else best
    return get


def prime_tops(ctx: Context, tops: dict) -> None:
    """Seed the top-* memo with top_of() results the caller already has for this exact state
    ({kind: (best, score)}), so the getters above do not walk the interest tables again."""
    for kind, value in tops.items():
        ctx.cache[("top", kind)] = value


def _recent_tag(tag: str):
    def get(ctx: Context) -> int:
        return sum(1 for r in ctx.v["recent"] if tag in r.get("tags", ()))
    return get


def _event_field(field: str):
    if field == "tags":
        def get_tags(ctx: Context):
            ev = ctx.event
            return None if ev is None else list(ev.get("tags") or ())
        return get_tags
    if field in ("rage", "dead"):
        def get_flag(ctx: Context):
            ev = ctx.event
            return None if ev is None else bool(ev.get(field))
        return get_flag

    def get(ctx: Context):
        ev = ctx.event
        return None if ev is None else ev.get(field)
    return get


# Event features whose getter returns the same object each time it is asked (a field of the
# event): reading them again costs no more than the context's memo would, so they skip it.
# (event.tags builds a new list per call and stays memoised: one list per evaluation, as before.)
def is_plain_event_field(doc_name: str) -> bool:
    return doc_name.startswith("event.") and doc_name != "event.tags"


def _event_prop(key: str):
    def get(ctx: Context):
        ev = ctx.event
        props = (ev or {}).get("props") or {}
        return props.get(key)
    return get


def _evidence(kind: str):
    def get(ctx: Context) -> float:
        return r6(decayed(ctx.v["intent"][kind], ctx.now, INTENT_HALF_LIFE_MS))
    return get


def _since(get_t):
    def get(ctx: Context):
        t = get_t(ctx)
        return None if t is None else max(0, ctx.now - t)
    return get


def _idle_ratio(ctx: Context) -> float:
    s = ctx.s
    if s["start"] is None:
        return 0.0
    total = ctx.now - s["start"]
    if total <= 0:
        return 0.0
    idle = s["idle"]
    if s["last"] is not None and ctx.now - s["last"] > 10_000:
        idle += ctx.now - s["last"]
    return r6(min(idle / total, 1.0))


def _click_rate(ctx: Context) -> float:
    s = ctx.s
    minutes = max((ctx.now - s["start"]) / 60_000 if s["start"] is not None else 0.0, 1.0)
    return r6(s["click"]["n"] / minutes)


_FIXED = {
    "profile.top.tag": _top("tag", False),
    "profile.top.tag_score": _top("tag", True),
    "profile.top.item": _top("item", False),
    "profile.top.item_score": _top("item", True),
    "profile.top.section": _top("section", False),
    "profile.recent.items": lambda ctx: [r["item"] for r in ctx.v["recent"]],
    "profile.recent.count": lambda ctx: len(ctx.v["recent"]),
    "profile.recent.last": lambda ctx: ctx.v["recent"][0]["item"] if ctx.v["recent"] else None,
    "profile.cart.count": lambda ctx: sum(ctx.v["cart"]["items"].values()),
    "profile.cart.items": lambda ctx: sorted(ctx.v["cart"]["items"]),
    "profile.cart.since_add": _since(lambda ctx: ctx.v["cart"]["added"] if ctx.v["cart"]["items"] else None),
    "profile.purchases": lambda ctx: ctx.v["purchases"],
    "profile.intent.state": lambda ctx: ctx.v["intent"]["state"],
    "profile.intent.since": _since(lambda ctx: ctx.v["intent"]["since"] if ctx.v["intent"]["since"] is not None else ctx.s["start"]),
    "profile.intent.consider": _evidence("consider"),
    "profile.intent.purchase": _evidence("purchase"),
    "session.duration": lambda ctx: 0 if ctx.s["start"] is None else max(0, ctx.now - ctx.s["start"]),
    "session.views": lambda ctx: ctx.s["views"],
    "session.page.url": lambda ctx: ctx.s["page"]["url"],
    "session.page.duration": _since(lambda ctx: ctx.s["page"]["since"]),
    "session.page.items": lambda ctx: len(ctx.s["page"]["items"]),
    "session.scroll.depth": lambda ctx: ctx.s["scroll"]["depth"],
    "session.scroll.speed": lambda ctx: ctx.s["scroll"]["speed"],
    "session.read.depth": lambda ctx: ctx.s["read"],
    "session.dwell.median": lambda ctx: r6(_median(ctx.s["dwell"]["recent"])),
    "session.dwell.count": lambda ctx: ctx.s["dwell"]["count"],
    "session.dwell.total": lambda ctx: ctx.s["dwell"]["total"],
    "session.hover.count": lambda ctx: ctx.s["hover"],
    "session.click.count": lambda ctx: ctx.s["click"]["n"],
    "session.click.rate": _click_rate,
    "session.click.rage": lambda ctx: ctx.s["click"]["rage"],
    "session.idle.ms": _since(lambda ctx: ctx.s["last"]),
    "session.idle.ratio": _idle_ratio,
    "session.adjustments": lambda ctx: ctx.s["adj"],
}

_PATTERNS = (
    ("profile.interest.item.", ITEM_RE, lambda key: _interest("item", key), "profile.interest.item.<key>"),
    ("profile.interest.tag.", TAG_RE, lambda key: _interest("tag", key), "profile.interest.tag.<tag>"),
    ("profile.interest.section.", TAG_RE, lambda key: _interest("section", key), "profile.interest.section.<slot>"),
    ("profile.recent.tag.", TAG_RE, _recent_tag, "profile.recent.tag.<tag>"),
    ("event.props.", PROP_RE, _event_prop, "event.props.<key>"),
)


def resolve(name: str):
    """(getter, documented name) for a feature name, or None when it is not in the namespace."""
    if not isinstance(name, str):
        return None
    if name in _FIXED:
        return _FIXED[name], name
    if name.startswith("event."):
        field = name[len("event."):]
        if f"event.{field}" in FEATURES and "<" not in field:
            return _event_field(field), name
    for prefix, pattern, make, doc in _PATTERNS:
        if name.startswith(prefix):
            key = name[len(prefix):]
            if pattern.match(key):
                return make(key), doc
            return None
    return None


def suggest(name: str) -> str | None:
    """The closest documented name, for a helpful hint next to an unknown-feature error."""
    import difflib

    candidates = [n for n in FEATURES if "<" not in n] + [n.split("<")[0] for n in FEATURES if "<" in n]
    match = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.75)
    return match[0] if match else None


def is_clock(doc_name: str) -> bool:
    return doc_name in CLOCK


def snapshot(work: dict, now: int, half_life: int, names) -> dict:
    """Values of the given features (for vectors, the simulator and the admin API)."""
    ctx = Context(work, now, half_life)
    out = {}
    for name in names:
        found = resolve(name)
        if found is None:
            raise KeyError(f"unknown feature {name}")
        out[name] = found[0](ctx)
    return out
