"""Short cyclic-GC pauses for long-running Raft services.

Why: CPython's full (generation 2) collection walks every tracked object. A reminders
node holding ~100,000 reminders paused for 36-59 ms on each full pass (measured with
`gc.callbacks` during `actorflow bench reminders`), every node of the cluster in turn;
while a node is paused it neither sends heartbeats nor acknowledges entries, so the
pauses went straight into the registration latency tail. The pauses grow with the
state, so a node holding millions of reminders would pause for much longer.

Policy (`FreezeSurvivors`): right after each collection of generation 1 or 2, move
what survived it into the permanent generation (`gc.freeze`), so that later passes walk
only what was allocated since. The freeze runs on the event loop, scheduled from the
collector's callback, never inside the collection itself. Measured on the same bench:
the longest pauses went from 36-59 ms to at most 8 ms.

What this costs, and the bound on it: a garbage *cycle* that includes a frozen object
is not collected while it stays frozen. Freezing right after a pass means that every
cycle among the objects that pass walked, garbage by then, is already gone; objects
frozen and later released by reference counting are freed as usual; the state machines
keep their state in dicts, tuples and dataclasses without back-references. What can
still leak is, for example, a request task that was in flight at a freeze and later
ends in an exception whose traceback points back at it. So every `reclaim_every_s`
(default one hour) everything is unfrozen and one full collection reclaims such cycles
(one long pause per hour instead of one every few seconds); the survivors are frozen
again.
`gc.get_freeze_count()` shows how many objects are frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

__all__ = ["FreezeSurvivors"]

FREEZE_FROM = 1  # generation 1 and 2 passes: both leave survivors worth freezing


class FreezeSurvivors:
    """While entered, each generation 1 or 2 collection is followed (soon, on the running
    loop) by `gc.freeze()`, and every `reclaim_every_s` frozen objects get one full pass.

    An async context manager around the service's lifetime, entered on its event loop."""

    def __init__(self, reclaim_every_s: float = 3600.0) -> None:
        if reclaim_every_s <= 0:
            raise ValueError("reclaim_every_s must be positive")
        self.reclaim_every_s = reclaim_every_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False
        self.freezes = 0
        self.reclaims = 0

    async def __aenter__(self) -> FreezeSurvivors:
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        self._task = self._loop.create_task(self._reclaim_periodically())
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reclaim(self) -> None:
        """Unfreeze and collect everything once (that pass then freezes the survivors again)."""
        gc.unfreeze()
        gc.collect()
        self.reclaims += 1

    async def _reclaim_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.reclaim_every_s)  # a period, not a wait for an event
            self.reclaim()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs in whichever thread triggered the collection (the event loop or Raft's
        # tick thread): only schedule here.
        if phase != "stop" or info.get("generation", 0) < FREEZE_FROM or self._scheduled:
            return
        if self._loop is None:
            return
        self._scheduled = True
        with contextlib.suppress(RuntimeError):  # loop closed: the process is stopping
            self._loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        self._scheduled = False
        gc.freeze()
        self.freezes += 1
