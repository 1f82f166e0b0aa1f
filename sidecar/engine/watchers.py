"""Local waiters on workflow instances (WaitForInstanceStart/Completion without polling
the store): the workflow actor calls `changed(id)` after every save; a waiter on this
sidecar wakes and re-reads the instance from its actor."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class Watchers:
    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def changed(self, instance_id: str) -> None:
        for event in self._events.get(instance_id, ()):
            event.set()

    def watch(self, instance_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[instance_id].add(event)
        return event

    def unwatch(self, instance_id: str, event: asyncio.Event) -> None:
        waiters = self._events.get(instance_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._events[instance_id]
