"""`evaluate`: one batch of events in, the new profile and the patches to send out. Pure.

Order of work for a batch (docs/RULES.md "How a batch is evaluated"):
1. consent: anything but "granted" learns nothing and sends nothing (PROTOCOL §8);
2. patches whose ttl ran out are forgotten (the client reverted them itself);
3. each event is folded into the profile, then the event rules bound to its kind run;
4. state rules run once, if a feature they read changed, a clock feature they read moved, their
   `for` timer is running, or a patch of theirs is showing (hysteresis revert check);
5. layering picks one winner per target; guards (global cap, max per session, cooldown,
   minimum display, idempotence) decide what is actually sent.

Patches follow PROTOCOL §5 without `pseq` (the gateway numbers them).
"""

from __future__ import annotations

import math

from .features import Context, prime_tops
from .patches import canonical_json, patch_id, patch_sig, rendered_patch_invalid, validate_patch
from .profile import Update, apply_event, normalise, r6, start_batch, top_after, top_of, top_raw
from .rules import RuleSet, render_value

TOP_FEATURES = (
    ("tag", "profile.top.tag", "profile.top.tag_score"),
    ("item", "profile.top.item", "profile.top.item_score"),
    ("section", "profile.top.section", None),
)


def _target_key(target: dict) -> str:
    """The target as stored with an active patch (canonical JSON, compared across batches)."""
    return canonical_json(target)


SIG_MEMO_MAX = 4096  # signatures memoised per rule (a few hundred KB at most), then started over


def _sig(rule, patch: dict) -> str:
    """The patch's signature (patch_sig); `patch` passed validation."""
    static = getattr(rule, "static_sig", None)
    if static:
        return static
    memo = getattr(rule, "sig_memo", None)
    if memo is None:
        return patch_sig(patch["target"], patch["ops"], patch["ttl"])
    # compile_rules made a memo only for rules whose rendered patch can differ in nothing but the
    # target's value and the affinity reorder keys; validated, those are strings, so they say
    # exactly what the canonical JSON and its hash would be.
    ops = patch["ops"]
    key = (next(iter(patch["target"].values())), *[tuple(ops[j]["keys"]) for j in rule.rank])
    sig = memo.get(key)
    if sig is None:
        if len(memo) >= SIG_MEMO_MAX:
            memo.clear()
        sig = memo[key] = patch_sig(patch["target"], ops, patch["ttl"])
    return sig


TOP_KINDS = tuple(kind for kind, _, _ in TOP_FEATURES)


def rank_page_items(work: dict, slot: str | None, now: int, hl: int, limit: int) -> list[str]:
    """The page's items (last view) ranked by decayed item + tag affinity, page order on ties.

    Items that the view listed under the target slot are ranked; when the page did not say which
    slot items belong to, all of its items are.
    """
    items = work["s"]["page"]["items"]
    if slot is not None:
        for it in items:  # any() without a generator
            if it.get("slot") == slot:
                items = [it for it in items if it.get("slot") == slot]
                break
    interest = work["v"]["interest"]
    item_table, tag_table = interest["item"], interest["tag"]
    # Items share tags: each tag's decayed score is worked out once per call (same value).
    tag_scores: dict = {}
    scored = []
    pow_ = math.pow
    for i, it in enumerate(items):
        key = it["key"]
        entry = item_table.get(key)
        if entry:  # decayed() inlined: the same expressions, so the same floats
            score, t = entry
            dt = now - t
            score = float(score) if dt <= 0 else score * pow_(2.0, -dt / hl)
        else:
            score = 0.0
        for tag in it.get("tags") or ():
            tag_score = tag_scores.get(tag)
            if tag_score is None:
                tag_entry = tag_table.get(tag)
                if tag_entry:  # decayed() inlined, as above
                    tag_score, t = tag_entry
                    dt = now - t
                    tag_score = float(tag_score) if dt <= 0 else tag_score * pow_(2.0, -dt / hl)
                else:
                    tag_score = 0.0
                tag_scores[tag] = tag_score
            score += tag_score
        # r6 inlined: decayed() values are floats, so their sum needs no float().
        scored.append((-(round(score, 6) + 0.0), i, key))
    scored.sort()
    keys, seen = [], set()
    for _, _, key in scored:
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys[:limit]


def _cause(event: dict) -> int:
    """The `cause` of a patch the event leads to: its seq, 0 without one."""
    seq = event.get("seq")
    return seq if isinstance(seq, int) else 0


class _Batch:
    """Working state of one evaluate() call."""

    def __init__(self, work: dict, now: int, ruleset: RuleSet) -> None:
        self.work = work
        self.now = now
        self.ruleset = ruleset
        self.hl = ruleset.settings["half_life_ms"]
        self.candidates: list[tuple] = []
        self.reverts: list[str] = []

    def propose(self, rule, ctx: Context, cause: int) -> None:
        """Render the rule's patch; keep it as a candidate if it is valid and not already showing."""
        render_target = getattr(rule, "render_target", None)
        if render_target is not None:  # compiled by compile_rules (rules.compile_render)
            target, ops = render_target(ctx), rule.render_ops(ctx)
        else:
            target, ops = render_value(rule.target, ctx), render_value(rule.ops, ctx)
        if rule.rank:
            slot = target.get("slot") if isinstance(target, dict) else None
            for j, limit in rule.rank.items():
                ops[j] = {"op": "reorder", "keys": rank_page_items(self.work, slot, self.now, self.hl, limit)}
            if all(not ops[j]["keys"] for j in rule.rank):
                return  # nothing known about the page yet: no reorder to send
        patch = {
            "id": "",
            "rule": rule.id,
            "target": target,
            "ops": ops,
            "ttl": rule.ttl,
            "priority": rule.priority,
            "cause": cause,
        }
        static_id = getattr(rule, "static_id", None)
        if static_id is not None:  # a target without templates: its id is known (compile_rules)
            patch["id"] = static_id
        elif isinstance(target, dict) and len(target) == 1 and isinstance(next(iter(target.values())), str):
            patch["id"] = patch_id(rule.id, target)
        # A rendered value from the visitor's own events can still be hostile (an item key with
        # markup): the patch is dropped, never sent half-checked. What compile_rules checked
        # (everything without a template) is not checked again.
        checks = getattr(rule, "ops_to_check", None)
        if checks is None:  # a Rule not made by compile_rules: the full check
            if validate_patch(patch):
                return
        elif rendered_patch_invalid(patch, rule.target_static, checks):
            return
        # The signature is only needed to compare with a showing patch of the same id, or to
        # record the patch once it is sent (_decide); most proposals need neither.
        sig = None
        active = self.work["s"]["active"].get(patch["id"])
        if active is not None:
            sig = _sig(rule, patch)
            if active["sig"] == sig:
                return  # already showing exactly this: idempotent
        confidence = rule.confidence(ctx) if rule.confidence is not None else 0
        if not isinstance(confidence, (int, float)) or isinstance(confidence, bool):
            confidence = 0
        self.candidates.append((rule, patch, confidence, sig))

    def revert(self, pid: str) -> None:
        self.work["s"]["active"].pop(pid, None)
        if pid not in self.reverts:
            self.reverts.append(pid)


def evaluate(profile: dict | None, events: list, now: int, ruleset: RuleSet, consent: str = "granted") -> dict:
    """Fold `events` into `profile` at time `now` and decide the patches (see module docstring)."""
    if not isinstance(now, int) or isinstance(now, bool):
        raise TypeError("now must be an integer (ms since the epoch)")
    if not isinstance(ruleset, RuleSet):
        raise TypeError("ruleset must come from compile_rules()")
    if not isinstance(events, list):
        raise TypeError("events must be a list of event objects (PROTOCOL §3.1)")
    for i, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("k"), str):
            raise TypeError(f"events[{i}] must be an event object with a kind k (PROTOCOL §3.1)")
    work = normalise(profile)
    s = work["s"]
    if consent != "granted":
        # PROTOCOL §8: no learning and no adjustment from tracking the visitor has not allowed.
        # Adjustments already showing are withdrawn; nothing else in the profile moves.
        reverts = sorted(s["active"])
        s["active"] = {}
        s["since"] = {}
        return {"profile": work, "patches": [], "reverts": reverts, "changed": []}

    batch = _Batch(work, now, ruleset)
    hl = batch.hl
    settings = ruleset.settings
    active = s["active"]
    for pid in sorted(active):
        until = active[pid]["until"]
        if until and now >= until:
            del active[pid]

    # The global cap is the first guard _decide applies, and only _decide moves the count: once a
    # session has used up its adjustments, no candidate of this batch could be sent, so none is
    # made (event rules are not even evaluated). State rules still run for their timers and reverts.
    capped = s["adj"] >= settings["max_adjustments"]

    update = Update()
    interest = work["v"]["interest"]
    # The tables' tops before the events, to tell which top features the batch moved. A batch
    # without events (a tick) moves none: the state rules compute the tops they read, if any.
    if events:
        raw_before = {kind: top_raw(interest[kind], now, hl) for kind in TOP_KINDS}  # unrounded, for top_after
        tops_before = {kind: (best, r6(score)) for kind, (best, score) in raw_before.items()}  # top_of()
    else:
        raw_before = tops_before = {}
    start_batch(work, update, now, bool(events))
    cause = 0
    ctx = None
    for event in events:
        ev = event
        if not ev.get("tags") and ev.get("item") is not None:
            tags = [t for it in s["page"]["items"] if it.get("key") == ev["item"] for t in it.get("tags") or ()]
            if tags:
                ev = dict(event, tags=tags)
        apply_event(work, ev, now, hl, update)
        if capped:
            continue  # nothing proposed: only the last event's cause is read (below)
        cause = _cause(event)
        rules = ruleset.event_rules(ev)
        if rules:
            # One context for the batch's events, with a fresh memo per event (the profile moved).
            if ctx is None:
                ctx = Context(work, now, hl, ev)
            else:
                ctx.event = ev
                ctx.cache = {}
            for rule in rules:
                if rule.when(ctx):
                    batch.propose(rule, ctx, cause)

    if capped and events:
        cause = _cause(events[-1])
    update.settle()
    tops_after = {}
    for kind, raw in raw_before.items():
        touched = update.interest[kind]
        if not touched and kind not in update.odd_kinds:
            tops_after[kind] = tops_before[kind]  # a table no event touched is as it was
        elif kind in update.odd_kinds or kind in update.evicted:
            tops_after[kind] = top_of(interest[kind], now, hl)
        else:
            # Only the bumped entries moved (see top_after): they are looked at, not the table.
            tops_after[kind] = top_after(interest[kind], raw, touched, now, hl)
    for kind, name, score_name in TOP_FEATURES if tops_before else ():
        if tops_before[kind][0] != tops_after[kind][0]:
            update.changed.add(name)
        if score_name and tops_before[kind][1] != tops_after[kind][1]:
            update.changed.add(score_name)

    # State rules: only those whose inputs moved, plus timers, clocks and showing patches.
    due: dict[int, object] = {}
    by_feature = ruleset.by_feature
    for name in update.changed.intersection(by_feature):
        for rule in by_feature[name]:
            due[rule.order] = rule
    # After a page load every state rule gets a look: what still holds is applied to the new page.
    for rule in ruleset.state_rules if update.new_page else ruleset.clock_rules:
        due[rule.order] = rule
    by_id = ruleset.by_id
    for rid in sorted(s["since"]):
        rule = by_id.get(rid)
        if rule is not None and not rule.event_bound and rule.enabled and rule.for_ms:
            due[rule.order] = rule
        else:
            del s["since"][rid]  # the rule was removed or changed: its timer means nothing now
    showing: dict[str, list[str]] = {}
    for pid in sorted(active):
        rid = active[pid]["rule"]
        showing.setdefault(rid, []).append(pid)
        rule = by_id.get(rid)
        if rule is not None and not rule.event_bound and rule.enabled:
            due[rule.order] = rule
    # A patch whose rule is gone (rule set changed) or disabled is withdrawn.
    for rid in sorted(showing):
        rule = by_id.get(rid)
        if rule is None or not rule.enabled:
            for pid in showing[rid]:
                batch.revert(pid)
    ctx = Context(work, now, hl)
    if tops_after:
        prime_tops(ctx, tops_after)  # the interest tables have not changed since tops_after
    for order in sorted(due):
        rule = due[order]
        if capped and not rule.for_ms and rule.id not in showing:
            # Nothing of this rule's can move: what it would propose could not be sent, it keeps
            # no `for` timer (the loop above dropped any), and it shows no patch to revert.
            continue
        ended = rule.until is not None and bool(rule.until(ctx))
        # `until` ends the adjustment: while it holds the rule does not fire again (no flicker).
        holds = not ended and bool(rule.when(ctx))
        if holds:
            if rule.for_ms:
                since = s["since"].setdefault(rule.id, now)
                if now - since < rule.for_ms:
                    continue
            if not capped:
                batch.propose(rule, ctx, cause)
        else:
            s["since"].pop(rule.id, None)
        if rule.revert and rule.id in showing:
            gone = ended if rule.until is not None else not rule.keep(ctx)
            if gone:
                for pid in showing[rule.id]:
                    if pid in active and now - active[pid]["shown"] >= rule.min_display:
                        batch.revert(pid)

    patches = _decide(batch, settings)
    if patches:
        update.changed.add("session.adjustments")
    return {
        "profile": work,
        "patches": patches,
        "reverts": batch.reverts,
        "changed": sorted(update.changed),
    }


def _decide(batch: _Batch, settings: dict) -> list[dict]:
    """Layering (one winner per target) then the guards, in a deterministic order."""
    work, now = batch.work, batch.now
    s = work["s"]
    active = s["active"]
    winners: dict[str, tuple] = {}
    for cand in batch.candidates:
        rule, patch, confidence, _ = cand
        # Candidates passed validation, so a target is {kind: string}: the (kind, value) pair
        # groups exactly as its canonical JSON would, without serialising it.
        key = next(iter(patch["target"].items()))
        # Business priority first, then confidence, then recency (the later event), then the
        # rule that comes first in the file: a total order, so CPython and Pyodide agree.
        rank = (patch["priority"], confidence, patch["cause"], -rule.order)
        best = winners.get(key)
        if best is None or rank > best[0]:
            winners[key] = (rank, cand)
    ordered = sorted(winners.values(), key=lambda w: (-w[0][0], w[1][1]["cause"], w[1][1]["id"]))
    fired = s["rules"]
    out: list[dict] = []
    for _, (rule, patch, _, sig) in ordered:
        if s["adj"] >= settings["max_adjustments"]:
            break
        record = fired.get(rule.id)
        if record is not None:
            if rule.max_per_session is not None and record["n"] >= rule.max_per_session:
                continue
            if now - record["last"] < rule.cooldown:
                continue
        tkey = _target_key(patch["target"])
        blocked = False
        for pid in sorted(active):
            other = active[pid]
            if pid == patch["id"] or other["target"] != tkey:
                continue
            # Another rule's patch holds this target. A higher business priority keeps it; an
            # equal or lower one keeps it for its minimum display time (no flicker).
            other_rule = batch.ruleset.by_id.get(other["rule"])
            min_display = other_rule.min_display if other_rule is not None else 0
            if other["priority"] > patch["priority"] or (
                other["priority"] == patch["priority"] and now - other["shown"] < min_display
            ):
                blocked = True
                break
        if blocked:
            continue
        for pid in sorted(active):
            if pid != patch["id"] and active[pid]["target"] == tkey:
                batch.revert(pid)
        if patch["id"] in batch.reverts:
            batch.reverts.remove(patch["id"])
        active[patch["id"]] = {
            "rule": rule.id,
            "target": tkey,
            "shown": now,
            "until": now + patch["ttl"] if patch["ttl"] else 0,
            "priority": patch["priority"],
            "sig": sig if sig is not None else _sig(rule, patch),
        }
        s["adj"] += 1
        fired[rule.id] = {"n": (record["n"] if record else 0) + 1, "last": now}
        out.append(patch)
    return out
