"""MemoryStore (compare-and-set commits) and the JSON lines event log (size-bounded rotation)."""

from __future__ import annotations

from microadjust.eventlog import EventLog
from microadjust.store.memory import MemoryStore


async def test_commit_on_a_stale_snapshot_loses_and_the_caller_reloads():
    store = MemoryStore()
    a = await store.load("v_visitor1", "s_session1")
    b = await store.load("v_visitor1", "s_session1")
    assert await store.commit("v_visitor1", "s_session1", a, {"v": {"n": 1}, "s": {}}, 1, 0, [{"k": "click", "ts": 1, "seq": 1}])
    assert not await store.commit("v_visitor1", "s_session1", b, {"v": {"n": 2}, "s": {}}, 1, 0, [])
    fresh = await store.load("v_visitor1", "s_session1")
    assert fresh.ack == 1 and fresh.profile["v"] == {"n": 1}


async def test_two_sessions_of_one_visitor_share_the_visitor_part_under_cas():
    store = MemoryStore()
    s1 = await store.load("v_visitor1", "s_tab_one1")
    s2 = await store.load("v_visitor1", "s_tab_two2")
    assert await store.commit("v_visitor1", "s_tab_one1", s1, {"v": {"tab": 1}, "s": {"x": 1}}, 1, 0, [])
    # Tab two read the visitor part before tab one wrote it: it must reload, not overwrite.
    assert not await store.commit("v_visitor1", "s_tab_two2", s2, {"v": {"tab": 2}, "s": {}}, 1, 0, [])
    s2 = await store.load("v_visitor1", "s_tab_two2")
    assert s2.profile["v"] == {"tab": 1} and s2.ack == 0


async def test_a_later_commit_replaces_the_stored_profile_and_leaves_old_snapshots_alone():
    # Profiles are stored without copies and are immutable once committed (store/memory.py
    # "Ownership"; tests/server/test_memory_store_copies.py drives the engine through it).
    store = MemoryStore()
    snap = await store.load("v_visitor1", "s_session1")
    await store.commit("v_visitor1", "s_session1", snap, {"v": {"items": [1]}, "s": {}}, 1, 0, [])
    loaded = await store.load("v_visitor1", "s_session1")
    await store.commit("v_visitor1", "s_session1", loaded, {"v": {"items": [1, 2]}, "s": {}}, 2, 0, [])
    assert loaded.profile["v"] == {"items": [1]}
    assert (await store.load("v_visitor1", "s_session1")).profile["v"] == {"items": [1, 2]}


async def test_erase_and_export_visitor():
    store = MemoryStore()
    snap = await store.load("v_visitor1", "s_session1")
    await store.commit("v_visitor1", "s_session1", snap, {"v": {"a": 1}, "s": {"b": 2}}, 3, 1, [{"k": "click", "ts": 1, "seq": 1}])
    export = await store.export_visitor("v_visitor1")
    assert export["profile"] == {"a": 1} and export["sessions"]["s_session1"]["ack"] == 3
    await store.erase_visitor("v_visitor1")
    assert (await store.load("v_visitor1", "s_session1")).profile is None


def test_committed_events_are_written_as_json_lines(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.append("v_visitor1", "s_session1", [{"k": "click", "ts": 5, "seq": 1}, {"k": "scroll", "ts": 6, "depth": 10, "speed": 1, "seq": 2}], at=99)
    log.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert lines[0] == '{"vid":"v_visitor1","sid":"s_session1","at":99,"k":"click","ts":5,"seq":1}'
    assert len(lines) == 2


def test_event_log_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", max_bytes=500, backups=2)
    for i in range(40):
        log.append("v_visitor1", "s_session1", [{"k": "click", "ts": i, "seq": i + 1}], at=i)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 500 for p in tmp_path.iterdir())
    newest = (tmp_path / "events.jsonl").read_text().splitlines()[-1]
    assert '"seq":40' in newest
