"""DESIGN.md 4.1 when a sidecar dies and is back before placement drops it: the sidecar
running an activity for a workflow that another sidecar owns is SIGKILLed and started
again at once, inside placement's drop grace. The activity's run died with it, and the
owner had nothing to notice: the table stayed the same. The restarted sidecar reports a
new incarnation, so its table entry changes and the round that records it makes the
owner re-issue the activity; the workflow completes (harness: conftest.py, 2 sidecars,
an SDK app beside each)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow import status
from placement.api.v1 import placement_pb2 as ppb
from placement.api.v1 import placement_pb2_grpc as ppb_grpc
from placement.client import host_from_proto
from placement.table import Table
from sidecar.engine.naming import activity_type, workflow_type

pytestmark = pytest.mark.slow

# A grace long enough that the restarted sidecar is surely back inside it (it takes
# about 1.5 s to start here; placement's default grace is 1.5 s).
CLUSTER = {"sidecars": 2, "env": {"ACTORFLOW_PLACEMENT_DROP_GRACE": "4"}}
ACTIVITY_S = 3.0
VERSION = "actorflow_placement_table_version"


def _table(cluster: Any) -> Table:
    with grpc.insecure_channel(cluster.info["placement"][0]) as channel:
        info = ppb_grpc.PlacementStub(channel).GetPlacementInfo(
            ppb.GetPlacementInfoRequest(), timeout=10
        )
    hosts = [host_from_proto(h) for h in info.hosts]
    return Table.build(info.table_version, info.term, hosts)


def _split_instance(cluster: Any, uid: Any) -> str:
    """An instance id whose workflow actor lives on sidecar 0 and whose first activity's
    actor (`{instance}::1::1`) on sidecar 1 (a sidecar's name is its gRPC address)."""
    rings = _table(cluster).rings
    first, second = (s["grpc"] for s in cluster.info["sidecars"])
    wf, act = workflow_type("default", "app"), activity_type("default", "app")
    for attempt in range(1000):
        iid = str(uid(f"split{attempt}"))
        on_wf = rings.lookup("default", wf, iid)
        if on_wf == first and rings.lookup("default", act, f"{iid}::1::1") == second:
            return iid
    raise AssertionError("no instance id splits across the two sidecars")


def test_an_activity_lost_to_a_quick_restart_is_run_again(cluster: Any, uid: Any) -> None:
    client = cluster.client(0)
    iid = _split_instance(cluster, uid)
    sent = cluster.metric("actorflow_activity_work_items_total", 1)
    client.schedule_new_workflow("long_step", input=ACTIVITY_S, instance_id=iid)
    cluster.eventually(
        "the activity never reached sidecar 1's app",
        lambda: cluster.metric("actorflow_activity_work_items_total", 1) > sent,
        30,
    )
    version = cluster.metric(VERSION, 0)
    cluster.kill_process("sidecar-1")()  # started again at once
    http = cluster.info["sidecars"][1]["http"]
    cluster.eventually(
        "sidecar 1 never came back",
        lambda: bool(asyncio.run(status.collect([], [], [http]))["sidecars"][0]["ok"]),
        60,
    )
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == ACTIVITY_S
    # The round that recorded the new incarnation reached the owner, and the activity
    # ran again on the restarted sidecar (a new process: its counters start at 0).
    assert cluster.metric(VERSION, 0) > version
    assert cluster.metric("actorflow_activity_work_items_total", 1) >= 1
