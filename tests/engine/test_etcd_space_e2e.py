"""etcd out of space (`actorflow up --store etcd` with a small quota): a member whose
database reaches its quota raises the NOSPACE alarm and refuses every write until an
operator compacts, defragments and disarms it. Meanwhile a start is answered UNAVAILABLE
naming the cause (it was INTERNAL, "etcd txn: RESOURCE_EXHAUSTED"), the sidecar keeps
serving, and a workflow whose activity finished meanwhile finishes once the space is
back: its checkpoint is written again until the store takes it (the refusal was a plain
store error before, so the turn failed once and nothing woke the instance again)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from sidecar.store import EtcdStore
from sidecar.store.etcd import EtcdConfig
from sidecar.store.testing import fill_to_quota, reclaim_space

pytestmark = pytest.mark.slow

QUOTA = 32 * 2**20
# History kept forever here, so that filler revisions fill the quota (`up` keeps 5 min).
CLUSTER = {
    "sidecars": 1,
    "store": "etcd",
    "up_args": [f"--etcd-quota-bytes={QUOTA}", "--etcd-compaction-retention=0"],
}
FAILURES = "actorflow_workflow_checkpoint_failures_total"
STEP_S = 2.0  # the in-flight workflow's activity: it ends while etcd is full


async def _fill(endpoints: list[str]) -> None:
    store = await EtcdStore.open(EtcdConfig(endpoints=tuple(endpoints)))
    try:
        assert "out of space" in str(await fill_to_quota(store))
    finally:
        await store.close()


def test_etcd_out_of_space_is_unavailable_and_workflows_resume(
    cluster: Any, uid: Any, resumes: Any
) -> None:
    c = cluster.client(0)
    endpoints = cluster.info["store"]["endpoints"]
    in_flight = c.schedule_new_workflow("long_step", input=STEP_S, instance_id=uid("step"))
    c.wait_for_workflow_start(in_flight, timeout_in_seconds=60)
    asyncio.run(_fill(endpoints))
    with pytest.raises(grpc.RpcError) as info:
        c.schedule_new_workflow("fan", input=3, instance_id=uid("full"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert "etcd is out of space" in (info.value.details() or ""), info.value.details()
    cluster.eventually(  # the in-flight workflow's next turn could not be saved
        "no checkpoint failed", lambda: cluster.metric(FAILURES) > 0, timeout_s=30
    )
    state = c.get_workflow_state(in_flight)  # reads still served
    assert state is not None and state.runtime_status == WorkflowStatus.RUNNING, state
    asyncio.run(reclaim_space(endpoints))
    resumes(c, in_flight, STEP_S)
