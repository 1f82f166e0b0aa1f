"""DESIGN.md 4.1 on the etcd store: `actorflow up --store etcd` (three etcd members),
workflows running (fan-outs checkpointing, durable timers), and the etcd member every
sidecar talks to first SIGKILLed. The sidecars' store clients go on with the other
members; every workflow ends with its right output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 2, "store": "etcd"}
TIMER_S = 1.0
N = 1000  # activities per fan-out: seconds of checkpoints, so the kill lands mid-run


def test_the_etcd_member_in_use_sigkilled_mid_run_loses_no_workflow(cluster: Any, uid: Any) -> None:
    c = cluster.client(0)
    fans = [c.schedule_new_workflow("fan", input=N, instance_id=uid(f"fan{i}")) for i in range(2)]
    timers = [
        c.schedule_new_workflow("timed", input=TIMER_S, instance_id=uid(f"t{i}")) for i in range(4)
    ]
    for iid in fans + timers:
        c.wait_for_workflow_start(iid, timeout_in_seconds=60)
    running = [c.get_workflow_state(iid) for iid in fans]
    assert any(s is not None and s.runtime_status == WorkflowStatus.RUNNING for s in running)
    cluster.kill_process("etcd-0")
    after = [
        c.schedule_new_workflow("fan", input=20, instance_id=uid(f"after{i}")) for i in range(2)
    ]
    for iid, n in [(f, N) for f in fans] + [(a, 20) for a in after]:
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) == sum(2 * i for i in range(n))
    for iid in timers:
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) >= TIMER_S
