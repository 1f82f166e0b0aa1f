"""Short pauses of the cyclic garbage collector in a long-lived service process.

A full (generation 2) pass of CPython's collector walks every tracked object: in a
reminders node holding 25,000 reminders that took 17-36 ms, twice in a 2.6 s run at
7,000 registrations/s, and every registration in flight waited for it (on the leader) or
for the commit it held up (both followers apply the same entries, so they collect at
the same moments). Most of those objects are old and will stay: the start-up objects, and
the state machine's table.

`CollectorPolicy.install()` freezes what is alive at start-up, then the survivors of
every full pass (`gc.freeze()` from the collector's own "stop" callback, when only
reachable objects are left), so that each full pass walks only what is new since the
last. The price is that a frozen object that later becomes part of a garbage cycle is not
reclaimed; so one full pass is let walk everything (`gc.unfreeze()`, a "sweep"), which
reclaims those, when the frozen objects have grown `sweep_growth` times since the last
sweep, or `sweep_every_s` after it, whichever comes first. A sweep costs what a full
pass cost without the policy, but it is rare: the default collector makes a full pass
each time the old objects grow by a quarter. Objects without cycles (reminders,
placement entries) are freed by reference counting, frozen or not.

Not used in the sidecar: there the live heap grows and shrinks with every fan-out
(activations, histories), so sweeps came at every doubling and an alternated A/B of a
10,000-activity fan-out showed the same full passes with and without the policy (8
passes, 270-410 ms in all, the longest 120-140 ms). The sidecar freezes its start-up
objects only.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_SWEEP_EVERY_S", "DEFAULT_SWEEP_GROWTH", "CollectorPolicy"]

DEFAULT_SWEEP_EVERY_S = 600.0
DEFAULT_SWEEP_GROWTH = 2.0


@dataclass(slots=True)
class CollectorPolicy:
    sweep_every_s: float = DEFAULT_SWEEP_EVERY_S
    sweep_growth: float = DEFAULT_SWEEP_GROWTH
    clock: Callable[[], float] = time.monotonic
    freezes: int = 0  # full passes whose survivors were frozen
    sweeps: int = 0  # full passes let walk everything
    _last_sweep: float = 0.0
    # Objects frozen since the last sweep (or install), and how many there were right
    # after it: counted as they are frozen, since `gc.get_freeze_count()` walks the whole
    # frozen list (13 ms for 500,000 objects). Frozen objects freed since are still
    # counted, so a sweep may come early, never late.
    _frozen: int = 0
    _baseline: int = 0
    _rebase: bool = False  # the next freeze follows a sweep: take a new baseline
    _installed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.sweep_every_s <= 0:
            raise ValueError(f"sweep_every_s must be positive, got {self.sweep_every_s}")
        if self.sweep_growth <= 1:
            raise ValueError(f"sweep_growth must be above 1, got {self.sweep_growth}")

    def install(self) -> None:
        """Collect and freeze what is alive now (call once start-up is done)."""
        if self._installed:
            return
        gc.collect()
        gc.freeze()
        self._last_sweep = self.clock()
        self._frozen = self._baseline = gc.get_freeze_count()  # once, at start-up
        gc.callbacks.append(self._on_pass)
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        gc.callbacks.remove(self._on_pass)
        gc.unfreeze()
        self._installed = False

    def _on_pass(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        now = self.clock()
        grown = self._frozen >= self._baseline * self.sweep_growth
        if grown or now - self._last_sweep >= self.sweep_every_s:
            # The next full pass walks everything once, frozen objects included.
            gc.unfreeze()
            self._last_sweep = now
            self._frozen = 0
            self._rebase = True
            self.sweeps += 1
            return
        # A full pass has just ended: generations 0 and 1 are empty and generation 2
        # holds only reachable objects, so nothing freed is frozen. Counting them costs
        # what the pass that walked them cost.
        survivors = len(gc.get_objects(generation=2))
        gc.freeze()
        self.freezes += 1
        if self._rebase:
            self._frozen = self._baseline = survivors
            self._rebase = False
        else:
            self._frozen += survivors
