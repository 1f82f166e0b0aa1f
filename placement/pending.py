"""Membership changes the placement leader has yet to propose: a pure bookkeeping core.

The control loop (placement/server.py) notes here the hosts whose table entry should
change and the hosts to remove once a delay runs out, and takes one command at a time
from `next_command`, since it keeps a single proposal in flight and batches whatever
piled up meanwhile. Reads no clock: the loop passes monotonic seconds for the delays
and the wall-clock milliseconds stamped into commands.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from placement import membership as ms
from placement.membership import HostRecord, RemoveReason


class PendingChanges:
    def __init__(self) -> None:
        self._upserts: dict[str, HostRecord] = {}
        self._removals: dict[str, RemoveReason] = {}
        self._removal_due: dict[str, tuple[float, RemoveReason]] = {}

    def want(self, record: HostRecord, hosts: Mapping[str, HostRecord]) -> None:
        """Propose `record` unless the table `hosts` already has the same entry."""
        current = hosts.get(record.name)
        if current is None or not current.same_table_entry(record):
            self._upserts[record.name] = record

    def remove_later(self, name: str, due: float, reason: RemoveReason) -> None:
        current = self._removal_due.get(name)
        if current is None or due < current[0]:
            self._removal_due[name] = (due, reason)

    def reconnected(self, name: str) -> None:
        self._removal_due.pop(name, None)
        self._removals.pop(name, None)

    def disconnected(self, name: str) -> None:
        self._upserts.pop(name, None)

    def expire(self, now: float, connected: Container[str], hosts: Container[str]) -> None:
        """Removals due by `now` of hosts still away become proposable; a host already
        out of the table `hosts` is just forgotten."""
        for name, (due, reason) in list(self._removal_due.items()):
            if due <= now and name not in connected:
                del self._removal_due[name]
                if name in hosts:
                    self._removals[name] = reason

    def clear(self) -> None:
        self._upserts.clear()
        self._removals.clear()
        self._removal_due.clear()

    def next_command(self, now_ms: int) -> dict[str, Any] | None:
        """The next command to propose, upserts first, or None when nothing is pending."""
        if self._upserts:
            records, self._upserts = list(self._upserts.values()), {}
            return ms.upsert_command(records, now_ms)
        if self._removals:
            # A remove command carries one reason: hosts removed for another wait their turn.
            reason = next(iter(self._removals.values()))
            names = [n for n, r in self._removals.items() if r is reason]
            for n in names:
                del self._removals[n]
            return ms.remove_command(names, reason, now_ms)
        return None
