"""The visitor profile: how a stream of micro-signals becomes state (pure, no clock).

`apply_event` folds one validated event (PROTOCOL §3.1) into a working copy of the profile and
reports which features it touched, so the rule index can re-evaluate only the rules that read
them. The maths (decay, EWMA, median filter, intent evidence) is documented in docs/FEATURES.md;
constants here are named after what they mean there.

Every event of a batch happens "at now": client timestamps are not trusted for decay (a visitor's
clock can be hours off), only the server-supplied `now` is.
"""

from __future__ import annotations

import math

DEFAULT_HALF_LIFE_MS = 1_800_000  # interest halves every 30 min: recent signals dominate a visit
INTENT_HALF_LIFE_MS = 300_000  # intent evidence fades within minutes when the visitor drifts off

MAX_ITEMS = 100  # interest entries kept per visitor, lowest decayed score dropped first
MAX_TAGS = 64
MAX_SECTIONS = 64
RECENT_ITEMS = 5
PAGE_ITEMS = 200  # PROTOCOL §3.1 view.items max

# Interest weights per signal. A click or an add-to-cart says more than a glance.
W_HOVER_INTENT = 1.0
W_HOVER_END = 0.25  # a pass of >= HOVER_END_MIN_MS without reaching intent
HOVER_END_MIN_MS = 500
W_DWELL_PER_5S = 1.0  # dwell weight = ms / 5000, capped at W_DWELL_MAX
W_DWELL_MAX = 2.0
W_CLICK = 1.5
W_ADD_TO_CART = 3.0

# Scroll speed EWMA: alpha 0.3 follows a change of pace within ~3 samples. Samples are first
# clipped (winsorised) so one fling of the wheel cannot flip "reader" into "skimmer".
SPEED_ALPHA = 0.3
SPEED_HARD_CAP = 10_000.0  # px/s; anything above is a jump (keyboard End, anchor link)
SPEED_CLIP_FACTOR = 3.0
SPEED_CLIP_FLOOR = 600.0
SPEED_WARMUP = 3  # samples before clipping against the running mean applies
SKIM_SPEED = 1_200.0  # px/s: above this the visitor is not reading what passes by

DWELL_WINDOW = 7  # median filter over the last 7 dwells: one tab left open cannot flip it
DWELL_CAP_MS = 120_000
IDLE_GAP_MS = 10_000  # a silence longer than this counts as idle time

# Intent evidence (docs/FEATURES.md "Intent"): each signal adds weight to "consider" or
# "purchase"; a state is entered at ENTER and left (hysteresis) below LEAVE.
E_HOVER = 0.5
E_DWELL = 0.75  # dwell >= 3 s on an item
E_DWELL_MIN_MS = 3_000
E_CLICK = 0.75
E_REPEAT = 0.5  # extra when the item is already among the recent ones (comparing, coming back)
E_ADD = 1.5
E_CHECKOUT = 2.0
E_REMOVE = -1.5
ENTER_CONSIDER = 2.0
LEAVE_CONSIDER = 1.0
ENTER_PURCHASE = 2.0
LEAVE_PURCHASE = 1.0
CHECKOUT_GOALS = ("begin_checkout", "checkout")


def r6(x: float) -> float:
    """Stored floats are rounded to 6 decimals so CPython, Redis and Pyodide agree (canonical JSON)."""
    return round(float(x), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


_pow = math.pow  # one global lookup instead of two on the hot paths (bump, top_of)


def decayed(entry: list | None, now: int, half_life: int) -> float:
    """Value of a [score, t] pair at `now`: score * 2^(-(now - t) / half_life)."""
    if not entry:
        return 0.0
    score, t = entry
    dt = now - t
    if dt <= 0:
        return float(score)
    return score * math.pow(2.0, -dt / half_life)


def bump(table: dict, key: str, weight: float, now: int, half_life: int, limit: int,
         update: "Update | None" = None, kind: str = "") -> None:
    """Add `weight` to the decayed score of `key`, then keep the `limit` strongest entries.

    With the batch's `update` and the table's interest `kind`, a dropped entry is recorded there
    (update.evicted: evaluate then finds the table's top by a full scan), and the batch's Drops
    for the table finds the entry to drop with less work.
    """
    # decayed() inlined (the hottest call of a batch): the same expressions, so the same floats.
    entry = table.get(key)
    if entry:
        score, t = entry
        dt = now - t
        value = (float(score) if dt <= 0 else score * _pow(2.0, -dt / half_life)) + weight
    else:
        value = 0.0 + weight
    # r6 inlined (the hottest call of a batch): `value` is already a float, so float() is moot;
    # max(value, 0.0) spelt as the test it makes (it returns `value` unless 0.0 > value; NaN too).
    table[key] = [round(0.0 if 0.0 > value else value, 6) + 0.0, now]
    if len(table) > limit:
        if update is None:
            del table[_weakest(table, now, half_life)]
        else:
            drops = update.drops.get(kind)
            if drops is None:
                drops = update.drops[kind] = Drops(update, kind)
            del table[drops.weakest(table, key, now, half_life)]
            update.evicted.add(kind)


def _weakest(table: dict, now: int, half_life: int, pairs: list | None = None):
    """min(table, key=lambda k: (decayed(table[k], now, half_life), k)), without two calls per
    entry: decayed() inlined (the same expressions, so the same float objects) and the same
    tuple comparison min() makes, so ties, NaN and errors come out as they did. The (score, key)
    pairs are appended to `pairs` if given."""
    weakest = None
    for key, entry in table.items():
        if entry:
            score, t = entry
            dt = now - t
            score = float(score) if dt <= 0 else score * _pow(2.0, -dt / half_life)
        else:
            score = 0.0
        cand = (score, key)
        if pairs is not None:
            pairs.append(cand)
        if weakest is None or cand < weakest:
            weakest = cand
    return weakest[1]


class Drops:
    """The entries that bumps drop from one full interest table during one batch (one `now`).

    A wide catalogue fills the table, and then every bump of a new key drops one entry: a scan
    of the whole table each (_weakest). Here the first drop scans and keeps each entry's (score,
    key); from the second on, those are sorted once, and the entry to drop is the weaker of the
    first one in that order the batch has neither bumped nor dropped since (an entry left alone
    keeps its score) and the weakest of the entries it bumped (each scored as bump() stored it
    at `now`). With string keys and no NaN score the order is total, so that is min()'s answer;
    otherwise, and after a key that is no string was bumped, every drop scans.
    """

    __slots__ = ("update", "kind", "pairs", "pos")

    def __init__(self, update: "Update", kind: str) -> None:
        self.update, self.kind = update, kind
        self.pairs: list | None = None  # (score, key) per entry at the first drop
        self.pos = -1  # -1: not sorted yet; -2: not usable, scan; else where the sorted walk is

    def weakest(self, table: dict, key, now: int, half_life: int):
        pairs, pos = self.pairs, self.pos
        if pairs is None:
            self.pairs = []
            return _weakest(table, now, half_life, self.pairs)
        if pos == -2 or type(key) is not str or self.kind in self.update.odd_kinds:
            self.pos = -2
            return _weakest(table, now, half_life)
        if pos == -1:
            scores, keys = zip(*pairs)
            total = set(map(type, keys)) == _STR_ONLY and set(map(type, scores)) == _FLOAT_ONLY
            if not total or any(map(math.isnan, scores)):
                self.pos = -2
                return _weakest(table, now, half_life)
            pairs.sort()
            pos = 0
        touched = self.update.interest[self.kind]  # the string keys the batch bumped, but `key`
        end = len(pairs)
        while pos < end and (pairs[pos][1] in touched or pairs[pos][1] == key or pairs[pos][1] not in table):
            pos += 1  # bumped or dropped: for the rest of the batch
        self.pos = pos
        weakest = pairs[pos] if pos < end else None
        for k in (key, *touched):
            entry = table.get(k)
            if entry is None:
                continue  # dropped
            score = float(entry[0])  # bumped at `now` (dt 0)
            if score != score:
                self.pos = -2
                return _weakest(table, now, half_life)
            cand = (score, k)
            if weakest is None or cand < weakest:
                weakest = cand
        return weakest[1]


def new_profile() -> dict:
    """An empty profile for a new visitor and session (plain JSON)."""
    return {"v": new_visitor(), "s": new_session()}


def new_visitor() -> dict:
    return {
        "interest": {"item": {}, "tag": {}, "section": {}},
        "recent": [],  # [{"item", "ts", "tags"}], most recent first
        "cart": {"items": {}, "added": None},
        "purchases": 0,
        "intent": {"state": "browsing", "since": None, "consider": None, "purchase": None},
    }


def new_session() -> dict:
    return {
        "start": None,  # first interaction (ms)
        "last": None,  # last interaction (ms); ticks (empty batches) are not interactions
        "views": 0,
        "page": {"url": None, "since": None, "items": []},
        "scroll": {"depth": 0, "speed": 0.0, "n": 0},
        "read": 0,  # deepest % reached while scrolling at reading speed
        "dwell": {"recent": [], "count": 0, "total": 0},
        "hover": 0,
        "click": {"n": 0, "rage": 0},
        "idle": 0,  # accumulated idle ms (gaps > IDLE_GAP_MS)
        "adj": 0,  # adjustments (patches) sent this session: the global cap counts these
        "rules": {},  # rule id -> {"n": fired count, "last": ms}
        "since": {},  # rule id -> ms the condition became true (`for` debounce)
        "active": {},  # patch id -> {"rule", "target", "shown", "until", "priority", "sig"}
    }


def copy_json(x):
    """Deep copy of plain JSON; much cheaper than copy.deepcopy on the hot path."""
    if isinstance(x, dict):
        return {k: copy_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [copy_json(v) for v in x]
    return x


_TIME_KEYS = frozenset(("start", "last", "since", "added"))


def _same_shape(default, value, key: str = "") -> bool:
    if default is None:  # later a time (ms), a url or a [score, t] pair
        if key in _TIME_KEYS:
            return value is None or (isinstance(value, int) and not isinstance(value, bool))
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _fill(default: dict, value) -> dict:
    """Missing parts (a profile stored by an older version, a new session) take their defaults;
    a part of the wrong type (a damaged store entry) is reset rather than crashing every batch."""
    if not isinstance(value, dict):
        return default
    for key, fresh in default.items():
        if key not in value or not _same_shape(fresh, value[key], key):
            value[key] = fresh
        elif isinstance(fresh, dict) and fresh:
            value[key] = _fill(fresh, value[key])
    return value


_ANY, _TIME, _NUMBER, _BOOL = 0, 1, 2, 3  # what `_same_shape` asks of a part; else a type


def _shape_spec(default: dict) -> tuple:
    """What `_fill` checks, flattened once: (key, check, sub-spec) per key of a default part."""
    spec = []
    for key, fresh in default.items():
        if fresh is None:
            check = _TIME if key in _TIME_KEYS else _ANY
        elif isinstance(fresh, bool):
            check = _BOOL
        elif isinstance(fresh, (int, float)):
            check = _NUMBER
        else:
            check = type(fresh)
        sub = _shape_spec(fresh) if isinstance(fresh, dict) and fresh else None
        spec.append((key, check, sub))
    return tuple(spec)


def _conforms(spec: tuple, value) -> bool:
    """True when `_fill` would leave `value` exactly as it is (every part present, right type).

    Exact types first (what JSON gives), then `_same_shape`'s isinstance rules; a dict or list
    part must be exactly a dict or list, stricter than `_fill`, so anything unusual takes the
    copy-and-fill path instead.
    """
    if type(value) is not dict:
        return False
    for key, check, sub in spec:
        part = value.get(key, _ABSENT)
        t = type(part)
        if t is check:  # the usual case first: exactly the default's type (a dict, list, str)
            if sub is not None and not _conforms(sub, part):
                return False
            continue
        if part is _ABSENT:
            return False
        if check is _NUMBER:
            if t is not int and t is not float and (not isinstance(part, (int, float)) or isinstance(part, bool)):
                return False
        elif check is _TIME:
            if part is not None and t is not int and (not isinstance(part, int) or isinstance(part, bool)):
                return False
        elif check is _ANY:
            continue
        elif check is _BOOL:
            if not isinstance(part, bool):
                return False
        elif t is not check:
            return False
        if sub is not None and not _conforms(sub, part):
            return False
    return True


_ABSENT = object()
_VISITOR_SPEC = _shape_spec(new_visitor())
_SESSION_SPEC = _shape_spec(new_session())


def _working_copy(profile: dict) -> dict:
    """A copy of a well-formed profile that shares only what evaluate() never changes in place.

    evaluate() mutates these containers in place, so each gets its own copy: the top level, the
    visitor and session parts, interest and its three tables, cart and cart.items, intent, and
    the session's scroll, dwell (and dwell.recent), click, rules, since and active. Everything
    else is only read or replaced wholesale (an interest entry [score, t], the recent list and
    its entries, intent evidence, the page, an active patch record, a rule's fired record), so it is
    shared with the caller's profile, which stays untouched as before. The result equals
    copy_json(profile) for a profile `_conforms` accepts; avoiding the deep copy of the tables
    and lists is what makes normalising ~7x cheaper (docs/PERFORMANCE.md "Hot-path changes").
    """
    v = profile["v"].copy()
    interest = v["interest"] = v["interest"].copy()
    interest["item"] = interest["item"].copy()
    interest["tag"] = interest["tag"].copy()
    interest["section"] = interest["section"].copy()
    cart = v["cart"] = v["cart"].copy()
    cart["items"] = cart["items"].copy()
    v["intent"] = v["intent"].copy()
    s = profile["s"].copy()
    s["scroll"] = s["scroll"].copy()
    dwell = s["dwell"] = s["dwell"].copy()
    dwell["recent"] = dwell["recent"].copy()
    s["click"] = s["click"].copy()
    s["rules"] = s["rules"].copy()
    s["since"] = s["since"].copy()
    s["active"] = s["active"].copy()
    work = profile.copy()
    work["v"] = v
    work["s"] = s
    return work


def normalise(profile: dict | None) -> dict:
    """A working copy of `profile` that evaluate() may change (the caller's stays untouched)."""
    if not profile:
        return new_profile()
    if (
        type(profile) is dict
        and _conforms(_VISITOR_SPEC, profile.get("v"))
        and _conforms(_SESSION_SPEC, profile.get("s"))
    ):
        # The usual case (a profile evaluate() produced, as stored): nothing to fill in.
        return _working_copy(profile)
    work = copy_json(profile)
    if not isinstance(work, dict):
        return new_profile()
    work["v"] = _fill(new_visitor(), work.get("v"))
    work["s"] = _fill(new_session(), work.get("s"))
    return work


def item_tags(work: dict, event: dict) -> list[str]:
    """Tags of the event's item: from the event, else from the page's items (view event)."""
    tags = event.get("tags")
    if tags:
        return list(tags)
    key = event.get("item")
    if key is not None:
        for it in work["s"]["page"]["items"]:
            if it.get("key") == key:
                return list(it.get("tags") or ())
    return []


def top_of(table: dict, now: int, half_life: int) -> tuple[str | None, float]:
    """Strongest key and its decayed score; ties go to the alphabetically first key (deterministic)."""
    best, best_score = top_raw(table, now, half_life)
    return best, r6(best_score)


def top_raw(table: dict, now: int, half_life: int) -> tuple:
    """top_of() before its rounding: (strongest key, its decayed score unrounded)."""
    best, best_score = None, 0.0
    pow_ = _pow
    for key, entry in table.items():
        # decayed() inlined: the same expressions, so the same floats.
        if entry:
            score, t = entry
            dt = now - t
            score = float(score) if dt <= 0 else score * pow_(2.0, -dt / half_life)
        else:
            score = 0.0
        if score > best_score or (score == best_score and best is not None and score > 0 and key < best):
            best, best_score = key, score
    return best, best_score


def top_after(table: dict, before: tuple, touched: set, now: int, half_life: int) -> tuple[str | None, float]:
    """top_of(table) after a batch bumped the string keys `touched` at `now` (and dropped no
    entry), given `before` = top_raw(table) as it was at the same `now` before the batch.

    The entries left alone have the decayed scores they had, so their strongest is `before` when
    its key was left alone too; when the batch bumped that key to at least its old score, it still
    beats every entry left alone. Either way only the bumped entries need a look. With string
    keys, top_of() finds the one maximum of (score, reversed key) over the positive scores in any
    order, and this is the same maximum. Otherwise (another key type, a lower score), and for a
    table hardly larger than the bumped keys, top_of() itself.
    """
    best, best_score = before
    if best is not None and best in touched:
        if not float(table[best][0]) >= best_score:
            return top_of(table, now, half_life)
        best, best_score = None, 0.0  # the bumped entries include `best`: they alone decide
    if len(table) <= len(touched) + 8 or set(map(type, table)) != _STR_ONLY:
        return top_of(table, now, half_life)  # (a key that is no string may not compare with one)
    for key in touched:
        score = float(table[key][0])  # bumped at `now`: top_of() reads the stored score (dt 0)
        if score > best_score or (score == best_score and best is not None and score > 0 and key < best):
            best, best_score = key, score
    return best, r6(best_score)


_STR_ONLY = {str}
_FLOAT_ONLY = {float}


class Update:
    """The outcome of folding events in: the touched feature names and whether a page loaded.

    Interest keys and recent tags are collected as keys and turned into feature names once, by
    `settle()` after the last event: a batch touches the same few keys over and over, and nothing
    reads the names before the batch's events are all folded in.
    """

    def __init__(self) -> None:
        self.changed: set[str] = set()
        self.new_page = False  # a view event: the client unloaded the page and every patch on it
        self.interest: dict[str, set] = {"item": set(), "tag": set(), "section": set()}
        self.odd_kinds: set[str] = set()  # interest kinds bumped under a key that is no string
        self.evicted: set[str] = set()  # interest kinds whose table dropped an entry (bump)
        self.drops: dict[str, Drops] = {}  # per interest kind, from its table's first drop (bump)
        # The tags the batch's _recent() calls touched: their union, and per call the recent list
        # it replaced and the new entry's tags (what each call's own set was made of).
        self.recent_union: set | None = None
        self.recent_calls: list[tuple] = []
        # step_intent found no transition and its inputs (evidence, cart, `now`) have not moved
        # since: the next call would find none either, so it is skipped.
        self.intent_settled = False

    def settle(self) -> set[str]:
        """`changed` with the collected keys' feature names added (call after the last event)."""
        changed = self.changed
        for kind, keys in self.interest.items():
            prefix = f"profile.interest.{kind}."
            changed.update([prefix + key for key in keys])
        tags = self.recent_union
        if not tags:
            return changed
        if all(type(t) is str for t in tags):
            changed.update([f"profile.recent.tag.{t}" for t in tags])
        else:
            # 1, 1.0 and True are one set key but three feature names: name each call's set
            # apart, made as each _recent() call once made it.
            for old, new_tags in self.recent_calls:
                touched = {t for r in old for t in r.get("tags", ())}
                touched.update(new_tags)
                changed.update([f"profile.recent.tag.{t}" for t in touched])
        return changed


_LIMITS = {"item": MAX_ITEMS, "tag": MAX_TAGS, "section": MAX_SECTIONS}


def _interest(work: dict, update: Update, kind: str, key: str, weight: float, now: int, hl: int) -> None:
    bump(work["v"]["interest"][kind], key, weight, now, hl, _LIMITS[kind], update, kind)
    _touch(update, kind, key)


def _touch(update: Update, kind: str, key) -> None:
    if type(key) is str:
        update.interest[kind].add(key)
    else:
        # Not a string (a damaged profile or an unchecked caller): 1, 1.0 and True are one set
        # key but three feature names, so the name is made here, as written.
        update.changed.add(f"profile.interest.{kind}.{key}")
        update.odd_kinds.add(kind)


def _engage(work: dict, update: Update, event: dict, weight: float, now: int, hl: int) -> None:
    """Interest for the element an event is about: the item and its tags, or a section (slot)."""
    if weight <= 0:
        return
    item = event.get("item")
    if item is not None:
        # _interest() unrolled for the item and its tags (several per event).
        interest = work["v"]["interest"]
        bump(interest["item"], item, weight, now, hl, MAX_ITEMS, update, "item")
        if type(item) is str:
            update.interest["item"].add(item)
        else:
            _touch(update, "item", item)
        # item_tags() without its copy of the event's list: the tags are only read here.
        tags = event.get("tags") or item_tags(work, event)
        if tags:
            table, touched = interest["tag"], update.interest["tag"]
            for tag in tags:
                bump(table, tag, weight, now, hl, MAX_TAGS, update, "tag")
                if type(tag) is str:
                    touched.add(tag)
                else:
                    _touch(update, "tag", tag)
    elif event.get("slot") is not None:
        _interest(work, update, "section", event["slot"], weight, now, hl)


def _recent(work: dict, update: Update, event: dict, now: int) -> None:
    """The last five items viewed (hovered with intent, dwelled on, clicked), most recent first."""
    item = event.get("item")
    if item is None:
        return
    v = work["v"]
    recent = v["recent"]
    before = recent[0]["item"] if recent else None
    # The tags of the entries the list held and the new entry's are named by Update.settle().
    # Only the batch's first call collects the entries' tags: a later call's list holds entries
    # the first one saw or entries this batch added, whose tags are in the union already.
    union = update.recent_union
    if union is None:
        union = update.recent_union = {t for r in recent for t in r.get("tags", ())}
    # A new list (not changed in place): settle() may need this call's list as it was.
    new = [r for r in recent if r["item"] != item]
    tags = item_tags(work, event)
    new.insert(0, {"item": item, "ts": now, "tags": tags})
    del new[RECENT_ITEMS:]
    v["recent"] = new
    union.update(tags)
    update.recent_calls.append((recent, tags))
    update.changed.update(("profile.recent.items", "profile.recent.count"))
    if before != item:
        update.changed.add("profile.recent.last")


_EVIDENCE_NAMES = {"consider": "profile.intent.consider", "purchase": "profile.intent.purchase"}


def _evidence(work: dict, update: Update, kind: str, weight: float, now: int) -> None:
    update.intent_settled = False
    intent = work["v"]["intent"]
    value = decayed(intent[kind], now, INTENT_HALF_LIFE_MS) + weight
    intent[kind] = [round(0.0 if 0.0 > value else value, 6) + 0.0, now]  # r6 inlined, as in bump()
    update.changed.add(_EVIDENCE_NAMES[kind])


def step_intent(work: dict, update: Update, now: int) -> None:
    """browsing -> considering -> purchasing on accumulated evidence, with hysteresis.

    One step per event at most, so a single event never jumps from browsing to purchasing, and a
    state is left only when its evidence has fallen clearly below the level that entered it.
    """
    if update.intent_settled:
        return
    v = work["v"]
    intent = v["intent"]
    consider = decayed(intent["consider"], now, INTENT_HALF_LIFE_MS)
    purchase = decayed(intent["purchase"], now, INTENT_HALF_LIFE_MS)
    cart = sum(v["cart"]["items"].values())
    state = intent["state"]
    new = state
    if state == "browsing":
        if consider >= ENTER_CONSIDER:
            new = "considering"
    elif state == "considering":
        if purchase >= ENTER_PURCHASE and cart > 0:
            new = "purchasing"
        elif consider < LEAVE_CONSIDER and purchase < LEAVE_PURCHASE:
            new = "browsing"
    elif state == "purchasing":
        if cart == 0 or purchase < LEAVE_PURCHASE:
            new = "considering"
    if new != state:
        intent["state"] = new
        intent["since"] = now
        update.changed.update(("profile.intent.state", "profile.intent.since"))
    else:
        update.intent_settled = True


def _goal(work: dict, update: Update, event: dict, now: int, hl: int) -> None:
    """Cart state from goal events (custom add_to_cart / remove_from_cart / purchase / checkout)."""
    update.intent_settled = False  # the cart or the intent may change
    name = event.get("name")
    props = event.get("props") or {}
    v = work["v"]
    cart = v["cart"]
    item = props.get("item")
    item = item if isinstance(item, str) and item else None
    qty = props.get("qty", 1)
    qty = qty if isinstance(qty, int) and not isinstance(qty, bool) and 0 < qty <= 999 else 1
    if name == "add_to_cart":
        key = item or "_"
        cart["items"][key] = min(cart["items"].get(key, 0) + qty, 999)
        if len(cart["items"]) > MAX_ITEMS:  # bounded: a hostile client cannot grow the profile
            del cart["items"][sorted(cart["items"])[0]]
        cart["added"] = now
        if item:
            _engage(work, update, {"item": item}, W_ADD_TO_CART, now, hl)
        _evidence(work, update, "purchase", E_ADD, now)
        _evidence(work, update, "consider", E_ADD / 2, now)
    elif name == "remove_from_cart":
        key = item or "_"
        if key in cart["items"]:
            left = cart["items"][key] - qty
            if left > 0:
                cart["items"][key] = left
            else:
                del cart["items"][key]
        _evidence(work, update, "purchase", E_REMOVE, now)
    elif name in CHECKOUT_GOALS:
        _evidence(work, update, "purchase", E_CHECKOUT, now)
    elif name == "purchase":
        cart["items"] = {}
        cart["added"] = None
        v["purchases"] += 1
        # The job is done: the next visit starts from browsing again.
        v["intent"] = {"state": "browsing", "since": now, "consider": None, "purchase": None}
        update.changed.update(
            ("profile.purchases", "profile.intent.state", "profile.intent.since",
             "profile.intent.consider", "profile.intent.purchase")
        )
    else:
        return
    update.changed.update(("profile.cart.count", "profile.cart.items", "profile.cart.since_add"))


def _median(values: list) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return 0.0
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def start_batch(work: dict, update: Update, now: int, has_events: bool) -> None:
    """Session clock bookkeeping once per batch: start, idle time."""
    s = work["s"]
    if not has_events:
        return
    if s["start"] is None:
        s["start"] = now
        update.changed.add("session.duration")
    elif s["last"] is not None and now - s["last"] > IDLE_GAP_MS:
        s["idle"] += now - s["last"]
    s["last"] = now
    update.changed.update(("session.idle.ms", "session.idle.ratio"))


_NUMBER_TYPES = (int, float)
_INFINITIES = (math.inf, -math.inf)


def _number(event: dict, key: str) -> float:
    """A numeric field of an event; the gateway validates them (§3.1), but a value of the wrong
    type must not take a whole batch down: it counts as 0."""
    value = event.get(key, 0)
    if type(value) in _NUMBER_TYPES and value == value and value not in _INFINITIES:
        return value
    return 0


def apply_event(work: dict, event: dict, now: int, half_life: int, update: Update) -> None:
    """Fold one event into the working profile and record the touched features."""
    s = work["s"]
    v = work["v"]
    kind = event.get("k")
    recent = v["recent"]
    recent_before = recent[0]["item"] if recent else None
    item = event.get("item")
    repeat = False
    if item is not None:
        for r in recent:  # any() without a generator: this runs for every event
            if r["item"] == item:
                repeat = True
                break
    if kind == "view":
        s["views"] += 1
        items = []
        for it in (event.get("items") or [])[:PAGE_ITEMS]:
            if isinstance(it, dict) and isinstance(it.get("key"), str):
                entry = {"key": it["key"], "tags": list(it.get("tags") or [])}
                if it.get("slot") is not None:
                    entry["slot"] = it["slot"]
                items.append(entry)
        s["page"] = {"url": event.get("url"), "since": now, "items": items}
        # A page load discards every patch the old page had (PROTOCOL §5: ttl 0 = until unload).
        s["active"] = {}
        update.new_page = True
        # Scroll and read depth are per page (PROTOCOL §3.1: depth is the max % on this page).
        s["scroll"]["depth"] = 0
        s["read"] = 0
        update.changed.update(
            ("session.views", "session.page.url", "session.page.items", "session.page.duration",
             "session.scroll.depth", "session.read.depth")
        )
    elif kind == "hover":
        dur = _number(event, "dur")
        if event.get("phase") == "intent":
            s["hover"] += 1
            update.changed.add("session.hover.count")
            _engage(work, update, event, W_HOVER_INTENT, now, half_life)
            _recent(work, update, event, now)
            if item is not None:
                _evidence(work, update, "consider", E_HOVER + (E_REPEAT if repeat else 0.0), now)
        elif dur >= HOVER_END_MIN_MS and dur < 2_000:
            # A pass that never reached intent still says a little; an ended intent hover was
            # already counted when it reached intent.
            _engage(work, update, event, W_HOVER_END, now, half_life)
    elif kind == "scroll":
        sc = s["scroll"]
        depth = max(0, min(100, int(_number(event, "depth"))))
        if depth > sc["depth"]:
            sc["depth"] = depth
            update.changed.add("session.scroll.depth")
        sample = max(0.0, min(float(_number(event, "speed")), SPEED_HARD_CAP))
        if sample == 0.0:
            # Speed 0 with a scroll event means the tracker could not time the move: a jump
            # (anchor link, End key, a single non-smooth wheel step). It is no evidence of pace,
            # so it neither drags the average down nor counts the jumped-over text as read.
            pass
        else:
            if sc["n"] >= SPEED_WARMUP:
                sample = min(sample, max(SPEED_CLIP_FACTOR * sc["speed"], SPEED_CLIP_FLOOR))
            speed = sample if sc["n"] == 0 else SPEED_ALPHA * sample + (1 - SPEED_ALPHA) * sc["speed"]
            speed = r6(max(speed, 0.0))
            if speed != sc["speed"]:
                sc["speed"] = speed
                update.changed.add("session.scroll.speed")
            sc["n"] += 1
            if speed <= SKIM_SPEED and depth > s["read"]:
                s["read"] = depth
                update.changed.add("session.read.depth")
    elif kind == "dwell":
        ms = max(0, int(_number(event, "ms")))
        dw = s["dwell"]
        dw["recent"].append(min(ms, DWELL_CAP_MS))
        del dw["recent"][:-DWELL_WINDOW]
        dw["count"] += 1
        dw["total"] += ms
        update.changed.update(("session.dwell.median", "session.dwell.count", "session.dwell.total"))
        _engage(work, update, event, min(ms / 5_000 * W_DWELL_PER_5S, W_DWELL_MAX), now, half_life)
        if item is not None and ms >= 1_000:
            _recent(work, update, event, now)
            if ms >= E_DWELL_MIN_MS:
                _evidence(work, update, "consider", E_DWELL + (E_REPEAT if repeat else 0.0), now)
    elif kind == "click":
        c = s["click"]
        c["n"] += 1
        update.changed.update(("session.click.count", "session.click.rate"))
        if event.get("rage"):
            c["rage"] += 1
            update.changed.add("session.click.rage")
        else:
            _engage(work, update, event, W_CLICK, now, half_life)
            _recent(work, update, event, now)
            if item is not None:
                _evidence(work, update, "consider", E_CLICK + (E_REPEAT if repeat else 0.0), now)
    elif kind == "custom":
        _goal(work, update, event, now, half_life)
    if not update.intent_settled:  # (step_intent's own first test, without the call)
        step_intent(work, update, now)
    recent = v["recent"]  # _recent() replaces the list
    if (recent[0]["item"] if recent else None) != recent_before:
        update.changed.add("profile.recent.last")
