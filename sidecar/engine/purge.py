"""Purging a finished workflow instance: its children (for a recursive purge) and its
rows, in an order that leaves nothing harmful when the purge is cut short.

A purge may take several store transactions (etcd takes 128 operations each), and the
sidecar may die between two of them. So the rows go in this order:
1. the rows of the instance's activity actors: a new instance of the same id would
   find them under the same activity actor ids (`{instance}::{task}::{generation}`) and
   take their outcomes for its own. The instance stays whole meanwhile, and a purge
   after the crash starts again. Activities run in another app (the SDK's `app_id`)
   keep their rows under that app's keys: the apps of the sidecars in the placement
   table are searched too (`other_apps`; an app that has left the cluster since keeps
   its rows);
2. in one transaction, the rows a load reads whatever the metadata says: the metadata,
   the custom status and the index entry. From then on the instance is gone for every
   reader;
3. the rest: history and inbox rows that no load reads, and that a new instance of the
   id overwrites before its metadata refers to them (orphans, as a checkpoint cut short
   leaves them). The next purge of the id sweeps whatever is left (`delete_rows` when
   there is no instance).

The deletions go in transactions of at most PURGE_BATCH rows even when the store takes
more: one transaction holds the store's writer (SQLite has one per file) for as long as
it runs, and the checkpoints of every other workflow wait behind it (a 10,000-activity
fan-out has 30,000 rows: 71 ms in one transaction).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

import msgpack

from sidecar.engine.naming import (
    activity_prefixes,
    index_key,
    instance_prefix,
    is_own_activity_key,
    workflow_type,
)
from sidecar.store.base import StateStore
from sidecar.workflow import CUSTOM_STATUS_KEY, METADATA_KEY, store_key

__all__ = ["PURGE_BATCH", "delete_rows", "purge_children"]

PURGE_BATCH = 500  # rows per transaction of a purge: about 1.5 ms of SQLite's writer


class _Router(Protocol):
    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        """The answer of `method` on the actor."""
        ...


async def delete_rows(
    store: StateStore,
    app_id: str,
    namespace: str,
    actor_type: str,
    instance_id: str,
    *,
    other_apps: Collection[str] = (),
) -> None:
    """Delete the rows of instance `instance_id` (actor type `actor_type`), its activity
    actors' rows (under `app_id` and every app of `other_apps`) and its index entry, in
    the order of the module docstring; nothing is written when none is stored."""
    own = await store.scan_prefix(instance_prefix(app_id, actor_type, instance_id))
    theirs = []
    for activities in activity_prefixes(app_id, namespace, instance_id, other_apps):
        found = await store.scan_prefix(activities)
        theirs += [key for key, _ in found if is_own_activity_key(activities, key)]
    index = index_key(app_id, instance_id)
    if not own and not theirs and not await store.get_many([index]):
        return  # nothing stored (the index entry is read only then)
    first = [store_key(app_id, actor_type, instance_id, short)
             for short in (METADATA_KEY, CUSTOM_STATUS_KEY)] + [index]  # fmt: skip
    rest = [*first, *(key for key, _ in own if key not in first)]
    step = max(1, min(PURGE_BATCH, store.limits.max_ops - 1))
    for keys in (theirs, rest):
        for start in range(0, len(keys), step):
            await store.transact({key: None for key in keys[start : start + step]})


async def purge_children(
    router: _Router, namespace: str, app_id: str, children: list[tuple[str, str]]
) -> int:
    """Purge `children` ((instance id, app id; "" = `app_id`), as `child_instances`
    lists them) recursively, one after the other; how many instances were deleted."""
    deleted = 0
    for instance_id, child_app in children:
        raw = await router.call(
            workflow_type(namespace, child_app or app_id),
            instance_id,
            "purge",
            msgpack.packb({"r": True}),
        )
        deleted += int(raw or b"0")
    return deleted
