"""The replicated reminder table, fed commands directly: no Raft, no clock."""

from __future__ import annotations

import gc
from typing import Any

import msgpack
import pytest

from raftkit.codec import Command
from raftkit.node import Entry
from reminders.machine import (
    CREATE_ITEM_FIELDS,
    Change,
    Key,
    ReminderTable,
    Stored,
    StoredList,
    create_item,
    key_from_wire,
)
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
    assert isinstance(result, StoredList) and len(result) == 1
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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("remaining", 0),  # no firing left
        ("remaining", 2),  # a one-shot (interval None) with two firings
        ("remaining", "x"),
        ("interval_ms", 0),
        ("expires_ms", NOW),  # expires before it is first due
        ("due_ms", "soon"),
    ],
)
@pytest.mark.parametrize("as_map", [False, True])
def test_a_create_with_a_broken_schedule_changes_nothing(
    field: str, value: object, as_map: bool
) -> None:
    """Every replica checks each item's schedule as `ScheduleState` does, before it
    writes anything: one bad item rejects the whole command (in either item form)."""
    table = ReminderTable()
    body = _create(KEY)
    other: Key = ("ns", "app", "T", "a2", "r")
    body["items"].insert(0, _create(other)["items"][0])
    body["items"][1][CREATE_ITEM_FIELDS.index(field)] = value
    if as_map:
        body["items"] = [_as_map(item) for item in body["items"]]
    with pytest.raises((ValueError, TypeError)):
        table.apply("create", body)
    assert table.get(other) is None and table.get(KEY) is None and table.generation == 0


def _as_map(item: list[Any]) -> dict[str, Any]:
    return dict(zip(CREATE_ITEM_FIELDS, item, strict=True))


def test_items_in_the_map_form_of_older_logs_apply_alike() -> None:
    """Logs written before items became arrays hold maps: replaying one gives the same
    table, results and changes as the array form, through msgpack both ways."""
    items = [
        _create(("ns", "app", "T", "a1", "r"), due="1s")["items"][0],
        _create(("ns", "app", "T", "a2", "r"), due="2s", period="R3/PT1S", ttl="1h",
                data=b"x")["items"][0],
    ]  # fmt: skip
    outcomes = []
    for form in (items, [_as_map(item) for item in items]):
        table = ReminderTable()
        body = msgpack.unpackb(msgpack.packb({"now_ms": NOW, "items": form}))
        result, changes = table.apply("create", body)
        assert isinstance(result, StoredList)
        outcomes.append((list(result), changes, table.to_wire()))
    assert outcomes[0] == outcomes[1]
    assert len(msgpack.packb(items)) < len(msgpack.packb([_as_map(i) for i in items])) / 2
    with pytest.raises(TypeError, match="array of 9"):
        ReminderTable().apply("create", {"now_ms": NOW, "items": [items[0][:8]]})


def test_create_results_read_as_stored_values() -> None:
    table = ReminderTable()
    keys: list[Key] = [("ns", "app", "T", f"a{i}", "r") for i in range(3)]
    body = {"now_ms": NOW, "items": [_create(k)["items"][0] for k in keys]}
    result, _ = table.apply("create", body)
    assert isinstance(result, StoredList) and len(result) == 3
    assert list(result) == [table.get(k) for k in keys]
    assert result[1] == table.get(keys[1]) and result[-1].key == keys[2]
    assert [s.key for s in result[1:]] == keys[1:]
    assert [key for key, _ in result.pairs()] == keys
    # The same request again: the stored rows come back untouched.
    again, changes = table.apply("create", body)
    assert isinstance(again, StoredList) and changes == []
    assert list(again) == list(result)


def test_key_parts_that_are_not_strings_are_converted() -> None:
    assert key_from_wire(["ns", 1, "T", "a", "r"]) == ("ns", "1", "T", "a", "r")
    assert key_from_wire(("ns", "app", "T", "a", "r")) == ("ns", "app", "T", "a", "r")
    with pytest.raises(ValueError, match="5 parts"):
        key_from_wire(["ns", "app"])


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
