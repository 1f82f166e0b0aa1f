"""The replicated reminder table, fed commands directly: no Raft, no clock."""

from __future__ import annotations

import gc
from typing import Any

import msgpack
import pytest

from raftkit.codec import Command
from raftkit.node import Entry
from reminders.machine import Change, Key, ReminderTable, Stored, create_item
from reminders.replica import Replica
from reminders.schedule import plan

NOW = 1_700_000_000_000
KEY: Key = ("ns", "app", "T", "a1", "r")


def _create(key: Key, due: str = "1s", period: str = "", ttl: str = "", data: bytes = b"") -> Any:
    schedule = plan(due, period, ttl, NOW)
    item = create_item(key, due_time=due, period=period, ttl=ttl, data=data, schedule=schedule)
    return {"now_ms": NOW, "items": [item]}


def _created(table: ReminderTable, body: Any) -> tuple[Stored, list[Change]]:
    result, changes = table.apply("create", body)
    assert isinstance(result, list) and len(result) == 1
    stored = result[0]
    assert isinstance(stored, Stored)
    return stored, changes


def test_create_is_idempotent_and_replace_bumps_generation() -> None:
    table = ReminderTable()
    first, changes = _created(table, _create(KEY))
    assert changes == [(KEY, NOW + 1000)]
    again, changes = _created(table, _create(KEY))
    assert again == first and changes == []
    replaced, changes = _created(table, _create(KEY, due="2s"))
    assert replaced.generation > first.generation
    assert changes == [(KEY, NOW + 2000)]


def test_progress_ignores_old_generation_and_repeats() -> None:
    table = ReminderTable()
    old, _ = _created(table, _create(KEY, period="R2/PT1S"))
    new, _ = _created(table, _create(KEY, due="3s", period="R2/PT1S"))
    item = [list(KEY), old.generation, old.schedule.next_due_ms, NOW + 1000]
    assert table.apply("progress", {"items": [item]}) == (0, [])
    item = [list(KEY), new.generation, new.schedule.next_due_ms, NOW + 3000]
    applied, changes = table.apply("progress", {"items": [item]})
    assert applied == 1 and changes == [(KEY, NOW + 4000)]
    # The same firing recorded twice (a retried proposal) counts once.
    assert table.apply("progress", {"items": [item]}) == (0, [])
    last = [list(KEY), new.generation, NOW + 4000, NOW + 4000]
    assert table.apply("progress", {"items": [last]}) == (1, [(KEY, None)])
    assert table.get(KEY) is None


def test_delete_and_malformed_commands() -> None:
    table = ReminderTable()
    table.apply("create", _create(KEY))
    assert table.apply("delete", {"keys": [list(KEY), ["a", "b", "c", "d", "e"]]}) == (
        [True, False],
        [(KEY, None)],
    )
    with pytest.raises(ValueError):
        table.apply("nope", {})
    bad = _create(KEY)
    bad["items"].append({"key": ["short"]})
    with pytest.raises((ValueError, KeyError)):
        table.apply("create", bad)
    assert table.get(KEY) is None  # nothing half-applied


def test_replica_snapshot_round_trip_and_change_feed() -> None:
    seen: list[tuple[int, Any]] = []
    replica = Replica(lambda seq, changes: seen.append((seq, changes)))
    replica.apply(Command("create", _create(KEY, period="R5/PT1S", data=b"x")), Entry(1, 1))
    other: Key = ("ns", "app", "T", "a2", "r")
    replica.apply(Command("create", _create(other, ttl="1m")), Entry(2, 1))
    assert [s for s, _ in seen] == [1, 2]
    copy = Replica(lambda seq, changes: seen.append((seq, changes)))
    copy.restore(replica.snapshot())
    assert seen[-1][1] is None  # a restore asks the firing loop to reload
    assert copy.lookup(KEY) == replica.lookup(KEY)
    assert copy.lookup(other) == replica.lookup(other)
    assert [r.key for r in copy.select("ns", "app", "T", "")] == [KEY, other]
    assert copy.select("ns", "app", "T", "a2")[0].key == other
    # The generation counter survives, so a new create never reuses a number.
    copy.apply(Command("create", _create(("ns", "app", "T", "a3", "r"))), Entry(3, 1))
    seq, due = copy.due_snapshot()
    assert len(due) == 3 and seq == seen[-1][0]


def test_a_large_table_leaves_the_collector_almost_nothing_to_walk() -> None:
    """A full collection walks every tracked object; a node holding 100,000 reminders
    pauses for it while registrations wait. Rows of atoms are untracked after one pass."""
    table = ReminderTable()
    gc.collect()
    before = len(gc.get_objects())
    schedule = plan("1h", "", "", 0)
    items = [
        create_item(("ns", "app", "t", f"a{i}", "r"), due_time="1h", period="", ttl="",
                    data=b"x", schedule=schedule)
        for i in range(5_000)
    ]  # fmt: skip
    table.apply("create", {"now_ms": 0, "items": items})
    table.apply("progress", {"items": [[["ns", "app", "t", "a0", "r"], 1, 3_600_000, 1]]})
    del items
    gc.collect()
    assert len(table) == 4_999
    assert len(gc.get_objects()) - before < 100  # 10,000 more before: two per reminder
    assert table.get(("ns", "app", "t", "a1", "r")) is not None  # still all there


def test_a_snapshot_restores_every_field_in_both_forms() -> None:
    table = ReminderTable()
    stored, _ = _created(table, _create(KEY, "1s", "R5/PT10S", "1h", b"payload"))
    wire = msgpack.unpackb(msgpack.packb(table.to_wire()))
    assert ReminderTable.from_wire(wire).get(KEY) == stored
    # The form snapshots had before rows, still read.
    older = {"generation": table.generation, "reminders": [stored.to_wire()]}
    restored = ReminderTable.from_wire(msgpack.unpackb(msgpack.packb(older)))
    assert restored.get(KEY) == stored and restored.generation == table.generation


def test_a_malformed_snapshot_row_is_refused() -> None:
    table = ReminderTable()
    _created(table, _create(KEY))
    wire = msgpack.unpackb(msgpack.packb(table.to_wire()))
    wire["rows"][0][1][7] = 0  # remaining 0: not a schedule
    with pytest.raises(ValueError, match="remaining"):
        ReminderTable.from_wire(wire)
