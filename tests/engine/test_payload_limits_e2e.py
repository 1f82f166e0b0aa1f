"""Payloads the state store cannot hold, on a real etcd cluster (1.5 MiB requests: a
payload limit of about 730 KiB, `sidecar.workflow.limits`), through the Dapr SDK.

Before: a start with a 1 MB input was accepted and then never ran (its first checkpoint
could not be written), and an activity returning 2 MB hung its workflow; worse, each such
instance looped for ever (the turn's activity was dispatched before the failed save, its
outcome came back and ran the turn again: two of them kept the sidecar and the app at
half a core each and wrote 120 KB of tracebacks a second). Now: refused at the API, or
the activity fails, or the workflow fails, and the sidecar goes on serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "store": "etcd"}
OVER = 800_000  # bytes: over the limit with etcd's default request size
UNDER = 600_000
TURNS = "actorflow_workflow_work_items_total"


def _finished(c: Any, iid: str) -> Any:
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None, iid
    return state


def test_a_start_event_or_output_over_the_limit_is_refused_at_the_api(
    cluster: Any, uid: Any
) -> None:
    c = cluster.client()
    big = uid("big")
    with pytest.raises(grpc.RpcError) as refused:
        c.schedule_new_workflow("sized", input={"echo": "e" * OVER}, instance_id=big)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "bytes per input or event" in str(refused.value.details())
    assert c.get_workflow_state(big) is None  # nothing stored

    http = cluster.info["sidecars"][0]["http"]
    body = json.dumps({"echo": "h" * OVER}).encode()
    request = urllib.request.Request(
        f"{http}/v1.0/workflows/dapr/sized/start?instanceID={uid('http')}", data=body,
        method="POST", headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 413
    assert json.loads(answer.value.read())["errorCode"] == "ERR_PAYLOAD_TOO_LARGE"

    waiting = c.schedule_new_workflow("waits", instance_id=uid("waits"))
    c.wait_for_workflow_start(waiting, timeout_in_seconds=30)
    with pytest.raises(grpc.RpcError) as refused:
        c.raise_workflow_event(waiting, "release", data="r" * OVER)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as refused:
        c.terminate_workflow(waiting, output="t" * OVER)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    state = c.get_workflow_state(waiting)
    assert state is not None and state.runtime_status == WorkflowStatus.RUNNING
    c.raise_workflow_event(waiting, "release", data="small")
    state = _finished(c, waiting)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == "small"

    assert _completed(c, {"echo": "e" * UNDER}, uid("fit")) == {"echo": UNDER}


def _completed(c: Any, args: dict[str, Any], instance_id: str) -> Any:
    """What `sized` returned for `args` (a failed task it caught, for instance)."""
    iid = c.schedule_new_workflow("sized", input=args, instance_id=instance_id)
    state = _finished(c, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state
    return json.loads(state.serialized_output)


def test_an_activity_result_over_the_limit_fails_the_activity(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    out = _completed(c, {"result": 1_000_000}, uid("res"))
    assert out["caught"] == "PayloadTooLarge", out
    assert "1000002 bytes" in out["message"]
    assert _completed(c, {"result": UNDER}, uid("res-ok")) == {"result": UNDER}


def test_a_turn_no_checkpoint_can_hold_fails_the_workflow_once(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    for args in ({"output": 1_600_000}, {"status": 1_600_000}):
        iid = c.schedule_new_workflow("sized", input=args, instance_id=uid("unsaveable"))
        state = _finished(c, iid)
        assert state.runtime_status == WorkflowStatus.FAILED, (args, state)
        assert state.failure_details.error_type == "PayloadTooLarge"
        assert "cannot be saved" in state.failure_details.message
    # Nothing keeps running those instances: a small workflow takes its one turn, and
    # no other turn goes to the app meanwhile (the old loop ran one every ~15 ms).
    before = cluster.metric(TURNS)
    iid = c.schedule_new_workflow("sized", input={}, instance_id=uid("after"))
    state = _finished(c, iid)
    assert state.runtime_status == WorkflowStatus.COMPLETED, state
    assert cluster.metric(TURNS) - before <= 2


def test_a_child_whose_start_is_refused_fails_its_task_in_the_parent(
    cluster: Any, uid: Any
) -> None:
    out = _completed(cluster.client(), {"child_input": 1_000_000}, uid("p"))
    assert out["caught"] == "ChildWorkflowNotStarted", out
    assert "RESOURCE_EXHAUSTED" in out["message"]
