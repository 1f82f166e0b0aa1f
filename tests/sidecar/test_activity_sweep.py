"""The activity sweep (`sidecar.engine.activity_sweep`): an activity's saved outcome that
lands after its instance was purged, or after it moved on to a newer generation, is
deleted one to two sweeps after it landed; rows of instances that exist in that
generation, and rows written again since, are kept; the rows of an instance's older
generations go once a newer one is saved; what the store could not do is done at the
next sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.activity_sweep import ActivitySweep
from sidecar.engine.apps import AppConnections
from sidecar.engine.effects import encode_dispatch
from sidecar.engine.naming import activity_prefix
from sidecar.engine.purge import delete_rows
from sidecar.engine.testing import WORKFLOW_TYPE, activity_actor
from sidecar.store import StoreUnavailableError, Versioned
from sidecar.store.gated import GatedStore
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.workflow import METADATA_KEY, DispatchActivity, new_state, store_key
from sidecar.workflow.checkpoint import encode_metadata

META = store_key("app", WORKFLOW_TYPE, "wf-1", METADATA_KEY)
ROW = "app||dapr.internal.default.app.activity||wf-1::1::1||activityState"


async def test_a_row_of_a_purged_instance_is_deleted_at_the_second_sweep() -> None:
    store = MemoryStore()
    version = await store.transact({ROW: b"outcome"})
    sweep = ActivitySweep(store)
    sweep.saved(META, ROW, version, 1)
    assert await sweep.sweep() == 0  # handed over since the last sweep: not due yet
    assert await store.get_many([ROW])
    assert await sweep.sweep() == 1
    assert await store.get_many([ROW]) == {}
    assert sweep.pending == 0


async def test_rows_of_existing_instances_and_rows_written_again_are_kept() -> None:
    store = MemoryStore()
    other_meta = store_key("app", WORKFLOW_TYPE, "wf-2", METADATA_KEY)
    other_row = ROW.replace("wf-1", "wf-2")
    await store.transact({other_meta: encode_metadata(new_state("wf-2"))})
    first = await store.transact({ROW: b"old execution", other_row: b"outcome"})
    await store.transact({ROW: b"a newer execution of wf-1"})
    sweep = ActivitySweep(store)
    sweep.saved(META, ROW, first, 1)  # wf-1 purged, but its row written again since
    sweep.saved(other_meta, other_row, first, 1)  # wf-2 exists
    assert await sweep.sweep(everything=True) == 0
    found = await store.get_many([ROW, other_row])
    assert found[ROW].value == b"a newer execution of wf-1" and other_row in found
    assert sweep.pending == 0  # both settled: the purge of wf-2 will find its row


async def test_a_row_of_an_older_generation_than_the_instance_runs_is_deleted() -> None:
    store = MemoryStore()
    await store.transact({META: encode_metadata(new_state("wf-1", generation=2))})
    old = await store.transact({ROW: b"generation 1"})
    row_2 = ROW.replace("::1::1||", "::1::2||")
    current = await store.transact({row_2: b"generation 2"})
    sweep = ActivitySweep(store)
    sweep.saved(META, ROW, old, 1)
    sweep.saved(META, row_2, current, 2)
    assert await sweep.sweep(everything=True) == 1
    assert list(await store.get_many([ROW, row_2])) == [row_2]


async def test_a_new_generation_drops_the_rows_of_older_ones() -> None:
    store = MemoryStore()
    prefix = activity_prefix("app", "default", "wf-1")
    rows = {
        f"{prefix}1::1||activityState": b"generation 1",
        f"{prefix}2::2||activityState": b"generation 2",
        f"{prefix}1::3||activityState": b"generation 3",
        f"{prefix}sub::1::1||activityState": b"instance wf-1::sub",
        f"{prefix}5::1::1||activityState": b"instance wf-1::5",
    }
    await store.transact(rows)
    sweep = ActivitySweep(store)
    sweep.superseded([prefix], 2)
    sweep.superseded([prefix], 3)  # the newest counts
    assert sweep.pending == 1
    assert await sweep.sweep() == 2
    left = await store.get_many(list(rows))
    assert sorted(v.value for v in left.values()) == [
        b"generation 3",
        b"instance wf-1::5",
        b"instance wf-1::sub",
    ]
    assert sweep.pending == 0


async def test_a_purged_fan_outs_rows_cost_a_read_and_a_transaction_not_one_each() -> None:
    """The purge deleted all but the three rows that landed after it: those three go in
    one transaction (one per row, 1,000 of them, kept a fan-out's sweep behind its
    interval, and its rows piled up in memory)."""
    store = MemoryStore()
    prefix = activity_prefix("app", "default", "wf-1")
    keys = [f"{prefix}{task}::1||activityState" for task in range(1000)]
    versions = [await store.transact({key: b"outcome"}) for key in keys]
    sweep = ActivitySweep(store)
    for key, version in zip(keys, versions, strict=True):
        sweep.saved(META, key, version, 1)
    await store.transact(dict.fromkeys(keys[3:]))  # the purge, which missed three
    # Every transaction takes the store's next revision: two probes around the sweep
    # count its transactions.
    before = await store.transact({"probe": b"before"})
    assert await sweep.sweep(everything=True) == 3
    assert await store.transact({"probe": b"after"}) - before == 2  # the sweep's one
    assert await store.get_many(keys) == {}


async def test_deletions_fit_the_stores_transactions() -> None:
    """A store that takes 4 operations a transaction (etcd's --max-txn-ops is 128 by
    default, under the sweep's 500): older generations' rows and stale rows alike."""
    store = MemoryStore(MemoryConfig(max_txn_ops=4))
    prefix = activity_prefix("app", "default", "wf-1")
    old = {f"{prefix}{task}::1||activityState": b"generation 1" for task in range(10)}
    for key, value in old.items():
        await store.transact({key: value})
    sweep = ActivitySweep(store)
    sweep.superseded([prefix], 2)
    assert await sweep.sweep() == 10
    keys = [key.replace("::1||", "::2||") for key in old]
    for key in keys:
        sweep.saved(META, key, await store.transact({key: b"generation 2"}), 2)
    assert await sweep.sweep(everything=True) == 10  # wf-1 is gone
    assert await store.get_many([*old, *keys]) == {}


class FlakyReads(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        if self.down:
            raise StoreUnavailableError("etcd range: no endpoint answered within 10s")
        return await super().get_many(keys)


async def test_rows_the_store_could_not_check_are_checked_at_the_next_sweep() -> None:
    store = FlakyReads()
    sweep = ActivitySweep(store)
    sweep.saved(META, ROW, await store.transact({ROW: b"outcome"}), 1)
    with pytest.raises(StoreUnavailableError):
        await sweep.sweep(everything=True)
    assert sweep.pending == 1
    store.down = False
    assert await sweep.sweep() == 1
    assert await store.get_many([ROW]) == {}


class Inbox:
    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        return b""  # the workflow took the outcome


async def test_an_outcome_saved_after_the_purge_is_swept() -> None:
    """The race the sweep exists for, step by step: the workflow has the outcome, ends
    and is purged while the outcome's save waits; the save lands after the purge's scan.
    Without the sweep the row stays for ever."""
    store, apps = GatedStore(background_only=True), AppConnections()
    store.gate.clear()
    await store.transact({META: b"the instance"})
    sweep, left = ActivitySweep(store), asyncio.Event()
    actor = activity_actor(store, apps, Inbox(), "wf-1::1::1", leave=left.set, sweep=sweep)
    stream = apps.stream()
    dispatch = DispatchActivity(
        instance_id="wf-1", execution_id="e1", generation=1, task_id=1, name="double",
        input="21", task_execution_id="te-1", target_app_id="", version="", fresh=True,
    )  # fmt: skip
    await actor.invoke("dispatch", encode_dispatch(dispatch, "app", fresh=True))
    item = await asyncio.wait_for(anext(stream), 10)
    answer = pb.ActivityResponse(instanceId="wf-1", taskId=1, completionToken=item.completionToken)
    answer.result.value = "42"
    apps.complete(item.completionToken, answer)
    await asyncio.wait_for(store.waiting.wait(), 10)
    await delete_rows(store, "app", "default", WORKFLOW_TYPE, "wf-1")  # the purge
    store.gate.set()
    await asyncio.wait_for(left.wait(), 10)
    assert ROW in await store.get_many([ROW])  # landed after the purge
    assert sweep.pending == 1
    assert await sweep.sweep(everything=True) == 1
    assert await store.get_many([ROW]) == {}
    await stream.aclose()
    await actor.on_deactivate()


def test_the_interval_is_a_setting() -> None:
    from sidecar.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--placement=127.0.0.1:1", "--activity-sweep=0.5"])
    assert config_from_args(args).activity_sweep_s == 0.5
    with pytest.raises(Exception, match="activity_sweep_s must be a positive number"):
        config_from_args(build_parser().parse_args(["--placement=x:1", "--activity-sweep=0"]))
