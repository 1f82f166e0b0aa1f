"""DESIGN.md 4.2 when the app outlives its sidecar: the SDK app holds activities it took
from a sidecar that is then SIGKILLed and started again; once they finish, the SDK
delivers their outcomes on its next connection, to the sidecar's next process. That
process re-runs those activities (it cannot know they ran) and hands out work items of
its own meanwhile. A late outcome must reach none of them.

Before, completion tokens were a counter that each sidecar process started at 1, so the
late outcome of the earlier process's item N was given to this process's item N:
another workflow's activity (which then failed, or was lost until placement's table
changed) or another workflow's turn (which failed the workflow). A chaos run found it
(3,400 workflows, one FAILED: "activity response for 'fan-829'#158 given to
'fan-850'#119"). Every workflow here ends COMPLETED with its right output."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow import status

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1}
STEP_S = 5.0  # each activity's run: the earlier process's outcomes arrive after it
BEFORE = 6  # workflows whose activities the app holds when the sidecar dies
AFTER = 8  # workflows started on the next process while those outcomes arrive
SENT = "actorflow_activity_work_items_total"


def _healthy(http: str) -> bool:
    return bool(asyncio.run(status.collect([], [], [http]))["sidecars"][0]["ok"])


def test_outcomes_sent_to_a_dead_sidecar_reach_no_item_of_its_successor(cluster: Any) -> None:
    c = cluster.client(0)
    tag = time.time_ns()
    before = [f"held-{tag}-{i}" for i in range(BEFORE)]
    # One at a time, each activity sent out before the next workflow starts: the items
    # alternate, turn then activity, so the held activities have the earlier process's
    # even numbers, and the next process gives its first numbers to their re-runs
    # (held too, for STEP_S), where the late outcomes arrive.
    for n, iid in enumerate(before, 1):
        c.schedule_new_workflow("long_step", input=STEP_S, instance_id=iid)
        cluster.eventually("activity not sent", lambda n=n: cluster.metric(SENT) >= n, 30)
    again = cluster.kill_process("sidecar-0")
    again()
    cluster.eventually(
        "sidecar-0 never came back",
        lambda: _healthy(cluster.info["sidecars"][0]["http"]),
        timeout_s=60,
    )
    c = cluster.client(0)
    after = [f"new-{tag}-{i}" for i in range(AFTER)]
    for iid in after:
        c.schedule_new_workflow("long_step", input=STEP_S, instance_id=iid)
    for iid in before + after:
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=90)
        assert state is not None, iid
        failure = state.failure_details.message if state.failure_details else None
        assert state.runtime_status == WorkflowStatus.COMPLETED, (iid, failure)
        assert json.loads(state.serialized_output) == STEP_S
