"""The engine's shortcuts give what the plain computation gives (docs/PERFORMANCE.md, engine).

`bump` with a batch's Update finds the entry to drop through `Drops` (a sorted walk after the
first drop), and `top_after` finds a table's top from the top before the batch and the bumped
keys. Both must pick exactly what a full scan picks: `min()` over (decayed score, key) for the
drop, `top_of` for the top. Hypothesis drives full tables through batches of bumps with ties,
equal timestamps, decayed and fresh entries.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from microadjust.engine.profile import Update, bump, decayed, top_after, top_of, top_raw

HL = 1_800_000
NOW = 1_767_225_600_000

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
scores = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]) | st.floats(0, 50, allow_nan=False)
ages = st.sampled_from([0, 0, 1000, 60_000, 1_800_000, 7_200_000])
tables = st.dictionaries(keys, st.tuples(scores, ages), min_size=1, max_size=40)
bumps = st.lists(st.tuples(keys, st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0])), min_size=1, max_size=30)


def _table(spec: dict) -> dict:
    return {k: [round(s, 6) + 0.0, NOW - age] for k, (s, age) in spec.items()}


def _plain_bump(table: dict, key: str, weight: float, limit: int) -> None:
    """bump() as it was written before its shortcuts: the reference."""
    value = decayed(table.get(key), NOW, HL) + weight
    table[key] = [round(max(value, 0.0), 6) + 0.0, NOW]
    if len(table) > limit:
        weakest = min(table, key=lambda k: (decayed(table[k], NOW, HL), k))
        del table[weakest]


@settings(max_examples=400, deadline=None)
@given(tables, bumps, st.integers(1, 40))
def test_drops_pick_what_a_full_scan_picks(spec, batch, limit):
    fast, plain = _table(spec), _table(spec)
    while len(fast) > limit:  # start at or under the limit, as bump() keeps tables
        _plain_bump(fast, next(iter(fast)), 0.0, limit)
        _plain_bump(plain, next(iter(plain)), 0.0, limit)
    update = Update()
    for key, weight in batch:
        bump(fast, key, weight, NOW, HL, limit, update, "item")
        update.interest["item"].add(key)
        _plain_bump(plain, key, weight, limit)
        assert fast == plain


@settings(max_examples=400, deadline=None)
@given(tables, bumps)
def test_top_after_a_batch_is_what_top_of_finds(spec, batch):
    table = _table(spec)
    before = top_raw(table, NOW, HL)
    touched = set()
    for key, weight in batch:
        bump(table, key, weight, NOW, HL, 10_000)  # no drop: top_after's precondition
        touched.add(key)
    assert top_after(table, before, touched, NOW, HL) == top_of(table, NOW, HL)
