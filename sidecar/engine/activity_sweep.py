"""Rows of activities that no one will read again, which nothing else deletes.

An activity actor keeps its outcome under `activityState` (a background write, made while
the outcome travels to the workflow: see `activity_actor`), so that a workflow that
recovers gets it re-sent instead of running the activity again. A purge deletes the rows
of its instance; two kinds escaped it:

- A row that lands after its instance was purged. The workflow can finish, and a client
  purge it, before the write lands: the purge's scan misses it (in a soak of one-activity
  workflows purged as soon as they ended, 194 of about 2,230 purged instances kept one).
- The rows of an instance's earlier generations. A workflow that continues as new never
  needs them again (activity actor ids carry the generation), yet they stayed until the
  instance was purged: an eternal monitor kept one more row per activity per generation.

So each activity actor hands its row to the sidecar's `ActivitySweep` once the write has
landed (`saved`), and a workflow whose new generation is saved names its activity key
prefixes (`superseded`). Every `interval_s` the sweep
- deletes the rows of older generations under each prefix named since the last sweep;
- checks the rows handed over during the interval before the last one, so each row once,
  one to two intervals after it landed (a purge begun by then has long finished): one
  read of their instances' metadata rows, then each row of an instance that is gone, or
  that runs a newer generation, is deleted, guarded by the version its save wrote (a new
  instance of a purged id that wrote the same key keeps its row). A row that landed
  before a purge's scan was deleted by that purge, one that landed after it is deleted
  here. Rows of instances that exist in their generation are dropped from the sweep:
  their purge, or their next generation, deals with them.

Best effort: a sidecar that dies with work in its sweep leaves those rows (the purge of
the instance, or its next continue-as-new, still finds all but the late landings).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sidecar.engine.naming import activity_generation
from sidecar.store import ConflictError, StoreError
from sidecar.store.base import StateStore
from sidecar.workflow.checkpoint import decode_metadata
from sidecar.workflow.errors import CorruptStateError

__all__ = ["SWEEP_S", "ActivitySweep"]

log = logging.getLogger(__name__)

SWEEP_S = 5.0
DELETE_BATCH = 500  # rows per transaction, as a purge's (`sidecar.engine.purge`)

# An activity's row: (key, the version its save wrote, the generation it belongs to).
Row = tuple[str, int, int]


@dataclass
class ActivitySweep:
    store: StateStore
    interval_s: float = SWEEP_S
    # metadata key of the instance -> rows of its activities
    _new: dict[str, list[Row]] = field(default_factory=dict)
    _due: dict[str, list[Row]] = field(default_factory=dict)
    # activity key prefix of an instance -> the generation it runs now
    _superseded: dict[str, int] = field(default_factory=dict)

    def saved(self, metadata_key: str, key: str, version: int, generation: int) -> None:
        """The row `key` of an activity of generation `generation` of the instance whose
        metadata row is `metadata_key` was written at `version`."""
        self._new.setdefault(metadata_key, []).append((key, version, generation))

    def superseded(self, prefixes: Iterable[str], generation: int) -> None:
        """The instance whose activities' rows lie under `prefixes` (one per app) runs
        `generation` now: rows of its older generations go at the next sweep."""
        for prefix in prefixes:
            self._superseded[prefix] = max(generation, self._superseded.get(prefix, 0))

    @property
    def pending(self) -> int:
        rows = sum(map(len, self._new.values())) + sum(map(len, self._due.values()))
        return rows + len(self._superseded)

    async def sweep(self, *, everything: bool = False) -> int:
        """One pass (over every row held, with `everything`); how many rows it deleted.
        The rows handed over since the last pass become due for the next; work the store
        could not do stays for the next pass."""
        deleted = await self._older_generations()
        due, self._due, self._new = self._due, self._new, {}
        if everything:
            _merge(due, self._due)
            self._due = {}
        if due:
            deleted += await self._check(due)
        if deleted:
            log.info("activity sweep: deleted %d rows no one reads", deleted)
        return deleted

    async def _older_generations(self) -> int:
        superseded, self._superseded = self._superseded, {}
        deleted = 0
        items = list(superseded.items())
        for i, (prefix, generation) in enumerate(items):
            try:
                deleted += await self._drop_older(prefix, generation)
            except StoreError:
                for rest, its_generation in items[i:]:  # at the next pass
                    self.superseded([rest], its_generation)
                raise
        return deleted

    async def _drop_older(self, prefix: str, generation: int) -> int:
        found = await self.store.scan_prefix(prefix)
        old = []
        for key, _ in found:
            its = activity_generation(prefix, key)
            if its is not None and its < generation:
                old.append(key)
        step = self._step
        for start in range(0, len(old), step):
            batch = old[start : start + step]
            await self.store.transact(dict.fromkeys(batch), background=True)
        return len(old)

    async def _check(self, due: dict[str, list[Row]]) -> int:
        try:
            found = await self.store.get_many(list(due))
        except StoreError:
            _merge(self._due, due)
            raise
        garbage: dict[str, list[Row]] = {}
        for meta, rows in due.items():
            running = _generation(found[meta].value) if meta in found else None
            old = [row for row in rows if running is None or running > row[2]]
            if old:
                garbage[meta] = old
        return await self._delete_stale(garbage) if garbage else 0

    async def _delete_stale(self, garbage: dict[str, list[Row]]) -> int:
        """Delete the rows of `garbage` still at the version their save wrote (most of a
        purged instance's rows are gone already: its purge found them), several to a
        transaction, each guarded by its version."""
        rows = [(meta, row) for meta, its in garbage.items() for row in its]
        try:
            current = await self.store.get_many([row[0] for _, row in rows])
        except StoreError:
            _merge(self._due, garbage)
            raise
        stale = [(m, r) for m, r in rows if r[0] in current and current[r[0]].version == r[1]]
        step = self._step
        deleted = 0
        for start in range(0, len(stale), step):
            deleted += await self._delete(stale[start : start + step])
        return deleted

    @property
    def _step(self) -> int:
        """Rows per transaction: DELETE_BATCH, or fewer if the store takes fewer."""
        return max(1, min(DELETE_BATCH, self.store.limits.max_ops))

    async def _delete(self, batch: list[tuple[str, Row]]) -> int:
        writes = {row[0]: None for _, row in batch}
        expect = {row[0]: row[1] for _, row in batch}
        try:
            await self.store.transact(writes, expect=expect, background=True)
        except ConflictError:
            if len(batch) == 1:
                return 0  # written again since (a new instance of a purged id): not ours
            return sum([await self._delete([one]) for one in batch])
        except StoreError:
            for meta, row in batch:  # checked again at the next pass
                self._due.setdefault(meta, []).append(row)
            return 0
        return len(batch)

    async def run(self) -> None:
        """A pass every `interval_s` until cancelled (a failed pass is logged)."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("activity sweep: %s (what it could not do is tried again)", exc)
            except Exception:  # a bug here must not end the sweep for good
                log.exception("activity sweep failed")


def _generation(metadata_row: bytes) -> int:
    """The generation an instance runs, from its metadata row; 0 (older than every
    row, so nothing of it is deleted) when the row cannot be read."""
    try:
        return int(decode_metadata(metadata_row)["gen"])
    except (CorruptStateError, KeyError, TypeError, ValueError):
        return 0


def _merge(into: dict[str, list[Row]], rows: dict[str, list[Row]]) -> None:
    for meta, more in rows.items():
        into.setdefault(meta, []).extend(more)
