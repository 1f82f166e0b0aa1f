"""The replicated reminder table: a pure function of the Raft log.

`ReminderTable` holds every reminder keyed by `Key` = (namespace, app id, actor type,
actor id, name). `apply(kind, body)` is deterministic: it reads no clock and makes no id;
the proposer stamps `now_ms` and the already planned schedule into the command. Each
apply returns its result and the list of `Change`s (key, new due time or None when the
reminder is gone) that the shell's firing loop consumes.

Commands (msgpack bodies; keys travel as 5-element lists):

- `create` `{"now_ms", "items": [[key, due_time, period, ttl, data, due_ms, remaining,
  interval_ms, expires_ms], ...]}` (`CREATE_ITEM_FIELDS`; logs written before
  2026-11-27 hold each item as a map of those names, still applied alike; arrays are
  under half the bytes and decode in half the time): a batch (group commit). Each
  item stores a reminder under a new `generation`, replacing any other reminder of that
  key, *unless* the stored one has the same request fields (`due_time`, `period`,
  `ttl`, `data`): then nothing changes. That makes create idempotent by key: a client
  retrying after a lost reply does not reset the schedule (nor restart a relative
  `due_time`). Returns a `StoredList` (a sequence of `Stored`, existing or new).
- `delete` `{"keys": [...]}`: returns a list of booleans (existed).
- `progress` `{"items": [[key, generation, due_ms, fired_at_ms], ...]}`: a batch of
  acknowledged firings. Applied with `schedule.after_fire` only if the reminder still
  has that generation and is still due at `due_ms`, so a late or repeated record (an
  older generation after a replace, a retried proposal whose first attempt did commit)
  is ignored. Finished reminders are deleted. Returns the number applied.
- `lead` `{"term"}`: a no-op the new leader commits (fenced by its term) before firing,
  so its table has applied everything committed by earlier terms.

The generation is a counter in the replicated state (never a clock or a random id), so
every replica numbers reminders alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from reminders.schedule import ScheduleState, after_fire, check_schedule

__all__ = [
    "CREATE_ITEM_FIELDS",
    "Change",
    "CreateItem",
    "Key",
    "ReminderTable",
    "Row",
    "Stored",
    "StoredList",
    "create_item",
    "key_from_wire",
]

Key = tuple[str, str, str, str, str]
Change = tuple[Key, int | None]

# A reminder as the table holds it: a plain tuple of atoms (due_time, period, ttl, data,
# created_ms, generation, then the schedule's next_due_ms, remaining, interval_ms,
# expires_ms). CPython's collector stops tracking an exact tuple of atoms after its first
# young pass, so a node holding 100,000 reminders does not make every full pass walk
# 200,000 objects (`Stored` and `ScheduleState` instances would stay tracked for life),
# and a full pass on the leader is a pause every registration in flight waits out.
# `Stored` is built on each read.
Row = tuple[str, str, str, bytes, int, int, int, int | None, int | None, int | None]


@dataclass(frozen=True, slots=True)
class Stored:
    """One reminder as replicated: the request fields, the schedule and its generation."""

    key: Key
    due_time: str
    period: str
    ttl: str
    data: bytes
    created_ms: int
    generation: int
    schedule: ScheduleState

    def row(self) -> Row:
        """This reminder as the table holds it (see `Row`)."""
        s = self.schedule
        return (
            self.due_time, self.period, self.ttl, self.data, self.created_ms,
            self.generation, s.next_due_ms, s.remaining, s.interval_ms, s.expires_ms,
        )  # fmt: skip

    def to_wire(self) -> list[Any]:
        s = self.schedule
        return [
            list(self.key),
            self.due_time,
            self.period,
            self.ttl,
            self.data,
            self.created_ms,
            self.generation,
            [s.next_due_ms, s.remaining, s.interval_ms, s.expires_ms],
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Stored:
        key, due_time, period, ttl, data, created_ms, generation, sched = raw
        return cls(
            key=key_from_wire(key),
            due_time=due_time,
            period=period,
            ttl=ttl,
            data=bytes(data),
            created_ms=created_ms,
            generation=generation,
            schedule=ScheduleState(*sched),
        )


def key_from_wire(raw: Any) -> Key:
    if not isinstance(raw, (list, tuple)) or len(raw) != 5:
        raise ValueError(f"a reminder key has 5 parts, got {raw!r}")
    ns, app, actor_type, actor_id, name = raw
    if all(type(part) is str for part in (ns, app, actor_type, actor_id, name)):
        return (ns, app, actor_type, actor_id, name)  # as every command carries them
    return (str(ns), str(app), str(actor_type), str(actor_id), str(name))


# The fields of a `create` item, in the order an item array holds them.
CREATE_ITEM_FIELDS = (
    "key", "due_time", "period", "ttl", "data", "due_ms", "remaining", "interval_ms",
    "expires_ms",
)  # fmt: skip
CreateItem = list[Any]


def create_item(
    key: Key, *, due_time: str, period: str, ttl: str, data: bytes, schedule: ScheduleState
) -> CreateItem:
    """One item of a `create` command body, as the proposer builds it."""
    s = schedule
    return [list(key), due_time, period, ttl, data, s.next_due_ms, s.remaining, s.interval_ms,
            s.expires_ms]  # fmt: skip


def _stored(key: Key, row: Row) -> Stored:
    due_time, period, ttl, data, created_ms, generation, due_ms, remaining, every, expires = row
    schedule = ScheduleState(due_ms, remaining, every, expires)
    return Stored(key, due_time, period, ttl, data, created_ms, generation, schedule)


class ReminderTable:
    """All reminders of the cluster. Writes are not thread-safe: the shell serialises
    them; a single-key `get` is one dict read of an immutable row, atomic under the GIL."""

    def __init__(self) -> None:
        self._rows: dict[Key, Row] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: Key) -> Stored | None:
        row = self._rows.get(key)
        return None if row is None else _stored(key, row)

    def firing(self, key: Key) -> tuple[int, int, bytes] | None:
        """(next_due_ms, generation, data): what firing a reminder needs, read from its
        row without building a `Stored` (this is on the path of every trigger)."""
        row = self._rows.get(key)
        return None if row is None else (row[6], row[5], row[3])

    def __iter__(self) -> Iterator[Key]:
        return iter(self._rows)

    def _put(self, stored: Stored) -> None:
        self._rows[stored.key] = stored.row()

    # -- apply ---------------------------------------------------------------------------

    def apply(self, kind: str, body: Any) -> tuple[object, list[Change]]:
        """Apply one command; raise (before mutating anything) on a malformed one."""
        if not isinstance(body, dict):
            raise TypeError(f"reminder command body must be a map, got {type(body).__name__}")
        match kind:
            case "create":
                return self._create(body)
            case "delete":
                return self._delete(body)
            case "progress":
                return self._progress(body)
            case "lead":
                return int(body["term"]), []
            case _:
                raise ValueError(f"unknown reminder command {kind!r}")

    def _create(self, body: dict[str, Any]) -> tuple[object, list[Change]]:
        now_ms = int(body["now_ms"])
        # Decode everything first: a malformed item rejects the whole command unchanged.
        parsed = [_parse_create_item(item) for item in body["items"]]
        rows = self._rows
        results: list[tuple[Key, Row]] = []
        changes: list[Change] = []
        for key, request, schedule in parsed:
            row = rows.get(key)
            if row is not None and row[:4] == request:  # the same request: unchanged
                results.append((key, row))
                continue
            self.generation += 1
            row = (*request, now_ms, self.generation, *schedule)
            rows[key] = row
            results.append((key, row))
            changes.append((key, schedule[0]))
        return StoredList(results), changes

    def _delete(self, body: dict[str, Any]) -> tuple[object, list[Change]]:
        keys = [key_from_wire(k) for k in body["keys"]]
        existed: list[bool] = []
        changes: list[Change] = []
        for key in keys:
            found = self._rows.pop(key, None) is not None
            existed.append(found)
            if found:
                changes.append((key, None))
        return existed, changes

    def _progress(self, body: dict[str, Any]) -> tuple[object, list[Change]]:
        items = [(key_from_wire(k), int(g), int(d), int(f)) for k, g, d, f in body["items"]]
        changes: list[Change] = []
        for key, generation, due_ms, fired_at_ms in items:
            row = self._rows.get(key)
            if row is None or row[5] != generation or row[6] != due_ms:
                continue  # replaced, deleted, or this firing was already recorded
            nxt = after_fire(ScheduleState(*row[6:]), fired_at_ms)
            if nxt is None:
                del self._rows[key]
                changes.append((key, None))
            else:
                self._rows[key] = (
                    *row[:6],
                    nxt.next_due_ms,
                    nxt.remaining,
                    nxt.interval_ms,
                    nxt.expires_ms,
                )
                changes.append((key, nxt.next_due_ms))
        return len(changes), changes

    # -- snapshot --------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The snapshot: `rows` pairs each key with its row as is (msgpack writes tuples
        as arrays), the cheapest form to write on the Raft thread, which pauses for it."""
        return {"generation": self.generation, "rows": list(self._rows.items())}

    @classmethod
    def from_wire(cls, raw: Any) -> ReminderTable:
        table = cls()
        if not raw:
            return table
        table.generation = int(raw["generation"])
        for key, row in raw.get("rows", ()):
            table._put(Stored.from_wire([key, *row[:6], row[6:]]))  # checked like a create
        for old in raw.get("reminders", ()):  # the form written before rows (2026-11-26)
            table._put(Stored.from_wire(old))
        return table

    def due_times(self) -> Iterable[tuple[Key, int]]:
        return ((key, row[6]) for key, row in self._rows.items())


_Request = tuple[str, str, str, bytes]  # due_time, period, ttl, data: a row's first four
_Schedule = tuple[int, int | None, int | None, int | None]  # a row's last four


def _parse_create_item(item: Any) -> tuple[Key, _Request, _Schedule]:
    """One item of a `create` body, checked as `ScheduleState` and `Stored` would check
    it, without building them (this runs for every item on every replica)."""
    if isinstance(item, dict):  # the form of logs written before 2026-11-27
        item = [item[name] for name in CREATE_ITEM_FIELDS]
    elif not isinstance(item, (list, tuple)) or len(item) != len(CREATE_ITEM_FIELDS):
        raise TypeError(f"a create item is an array of {len(CREATE_ITEM_FIELDS)} fields")
    key, due_time, period, ttl, data, due_ms, remaining, interval_ms, expires_ms = item
    schedule = (int(due_ms), remaining, interval_ms, expires_ms)
    check_schedule(*schedule)
    request = (str(due_time), str(period), str(ttl), bytes(data))
    return key_from_wire(key), request, schedule


class StoredList(Sequence[Stored]):
    """What a `create` returns: each item's reminder (new or the unchanged existing
    one), built as a `Stored` only when read; followers never read it."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[tuple[Key, Row]]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Stored]:
        return (_stored(key, row) for key, row in self._rows)

    @overload
    def __getitem__(self, index: int) -> Stored: ...
    @overload
    def __getitem__(self, index: slice) -> list[Stored]: ...
    def __getitem__(self, index: int | slice) -> Stored | list[Stored]:
        if isinstance(index, slice):
            return [_stored(key, row) for key, row in self._rows[index]]
        key, row = self._rows[index]
        return _stored(key, row)

    def pairs(self) -> list[tuple[Key, Row]]:
        """The (key, row) of each item, without building a `Stored`: the list this
        result holds, not a copy (rows are immutable tuples; do not modify the list)."""
        return self._rows

    def __repr__(self) -> str:
        return f"StoredList({len(self._rows)} reminders)"
