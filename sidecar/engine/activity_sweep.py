"""Saved activity outcomes that land after their instance was purged.

An activity actor saves its outcome while the outcome travels to the workflow (a
background write, see `activity_actor`). The workflow can finish, and a client purge
it, before that write lands: the purge's scan then misses the row, and nothing would
ever delete it (in a soak of one-activity workflows purged as soon as they ended, 194 of
about 2,230 purged instances kept one).

So each activity actor hands its row to the sidecar's `ActivitySweep` once the write has
landed (`saved`). Every `interval_s` the sweep checks the rows handed over during the
interval before the last one, so each row is checked once, one to two intervals after
it landed (a purge that had begun by then has long finished): one read of their
instances' metadata rows, then each row of an instance that no longer exists is deleted,
guarded by the version its save wrote (a newer execution of the id that wrote the same
key keeps its row). A row that landed before a purge's scan was deleted by that purge;
one that landed after it is deleted here: either way none is left. Rows of instances
that exist are dropped from the sweep: their purge, whenever it comes, finds them.

Best effort: a sidecar that dies holding rows unchecked leaves those of purged instances
(rare: the purge must have overtaken the write, and the sidecar die within seconds).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sidecar.store import ConflictError, StoreError
from sidecar.store.base import StateStore

__all__ = ["SWEEP_S", "ActivitySweep"]

log = logging.getLogger(__name__)

SWEEP_S = 5.0


@dataclass
class ActivitySweep:
    store: StateStore
    interval_s: float = SWEEP_S
    # metadata key of the instance -> [(activity row key, the version its save wrote)]
    _new: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    _due: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def saved(self, metadata_key: str, key: str, version: int) -> None:
        """The row `key` of an activity of the instance whose metadata row is
        `metadata_key` was written at `version`."""
        self._new.setdefault(metadata_key, []).append((key, version))

    @property
    def pending(self) -> int:
        return sum(map(len, self._new.values())) + sum(map(len, self._due.values()))

    async def sweep(self, *, everything: bool = False) -> int:
        """Check the rows that are due (all of them with `everything`); how many were
        deleted. The rows handed over since the last sweep become due for the next; rows
        the store could not check or delete are due again then."""
        due, self._due, self._new = self._due, self._new, {}
        if everything:
            _merge(due, self._due)
            self._due = {}
        if not due:
            return 0
        try:
            present = await self.store.get_many(list(due))
        except StoreError:
            _merge(self._due, due)
            raise
        deleted = 0
        for meta, rows in due.items():
            if meta in present:
                continue
            for key, version in rows:
                try:
                    await self.store.transact({key: None}, expect={key: version}, background=True)
                except ConflictError:
                    continue  # written again since (a newer execution of the id): not ours
                except StoreError:
                    self._due.setdefault(meta, []).append((key, version))
                    continue
                deleted += 1
        if deleted:
            log.info("activity sweep: deleted %d rows of purged instances", deleted)
        return deleted

    async def run(self) -> None:
        """Sweep every `interval_s` until cancelled (a failed sweep is logged)."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("activity sweep: %s (its rows are checked at the next one)", exc)


def _merge(into: dict[str, list[tuple[str, int]]], rows: dict[str, list[tuple[str, int]]]) -> None:
    for meta, more in rows.items():
        into.setdefault(meta, []).extend(more)
