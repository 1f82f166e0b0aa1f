"""`Replica`: the `raftkit.StateMachine` around the pure `ReminderTable`.

pysyncobj applies commands on its tick thread while the asyncio shell reads the table
(API reads, the firing loop). A lock serialises apply, snapshot and whole-table reads;
a single-key `lookup` is one dict read of an immutable row, atomic under the GIL.

Change feed: after each apply that changed something, `on_changes(seq, changes)` is
called on the tick thread (the shell forwards it with `call_soon_threadsafe`); after a
snapshot restore it is called with `changes=None`, meaning "reload everything". `seq`
increases by one per notification, and `due_snapshot()` returns the seq it reflects,
so the firing loop can rebuild its due queue from a snapshot and skip older events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from raftkit.codec import Command, decode_snapshot, encode_snapshot
from raftkit.node import Entry
from reminders.machine import Change, Key, ReminderTable, Stored

__all__ = ["ChangeHook", "Replica"]

ChangeHook = Callable[[int, list[Change] | None], None]


class Replica:
    def __init__(self, on_changes: ChangeHook | None = None) -> None:
        self._table = ReminderTable()
        self._lock = threading.Lock()
        self._seq = 0
        self._on_changes = on_changes

    def set_hook(self, on_changes: ChangeHook | None) -> None:
        self._on_changes = on_changes

    # -- StateMachine (tick thread) --------------------------------------------------------

    def apply(self, command: Command, entry: Entry) -> object:
        with self._lock:
            result, changes = self._table.apply(command.kind, command.body)
            if changes:
                self._seq += 1
            seq = self._seq
        if changes and self._on_changes is not None:
            self._on_changes(seq, changes)
        return result

    def snapshot(self) -> bytes:
        with self._lock:
            return encode_snapshot(self._table.to_wire())

    def restore(self, data: bytes) -> None:
        table = ReminderTable.from_wire(decode_snapshot(data))
        with self._lock:
            self._table = table
            self._seq += 1
            seq = self._seq
        if self._on_changes is not None:
            self._on_changes(seq, None)

    # -- reads (any thread) ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, key: Key) -> Stored | None:
        return self._table.get(key)

    def firing(self, key: Key) -> tuple[int, int, bytes] | None:
        """(next_due_ms, generation, data) of a reminder, or None: see `ReminderTable`."""
        return self._table.firing(key)

    def due_snapshot(self) -> tuple[int, list[tuple[Key, int]]]:
        """Every reminder's next due time, and the change seq this reflects."""
        with self._lock:
            return self._seq, list(self._table.due_times())

    def select(self, namespace: str, app_id: str, actor_type: str, actor_id: str) -> list[Stored]:
        """The reminders of an app (narrowed by actor type and id when given), by key."""
        with self._lock:
            found = [
                stored
                for k in self._table
                if k[0] == namespace
                and k[1] == app_id
                and (not actor_type or k[2] == actor_type)
                and (not actor_id or k[3] == actor_id)
                and (stored := self._table.get(k)) is not None
            ]
        found.sort(key=lambda r: r.key)
        return found
