"""The state store out of reach (`actorflow up --store etcd`, every etcd member
SIGKILLed): a start is answered UNAVAILABLE on the gRPC API and 503
`ERR_STORE_UNAVAILABLE` on the HTTP API (the SDK retries its waits on UNAVAILABLE; it
gave up at once on the INTERNAL this used to be), the sidecar keeps serving, and once
the members are back a workflow started before the outage is read and new ones run. A
workflow whose activity finished during the outage finishes too: its turn's checkpoint
failed, and the runner ran the turn again until the store took it (it stopped at the
first failure before, leaving the instance RUNNING with nothing to wake it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "store": "etcd"}
MEMBERS = ("etcd-0", "etcd-1", "etcd-2")
FAILURES = "actorflow_workflow_checkpoint_failures_total"
STEP_S = 2.0  # the in-flight workflow's activity: it ends while the store is away


def _grpc_start(c: Any, iid: str) -> tuple[grpc.StatusCode, str]:
    try:
        c.schedule_new_workflow("fan", input=3, instance_id=iid)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _http_start(base: str, iid: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{base}/v1.0/workflows/fan/{iid}/start", b"3", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_store_out_of_reach_is_unavailable_and_the_sidecar_recovers(
    cluster: Any, uid: Any, resumes: Any
) -> None:
    c = cluster.client(0)
    before = c.schedule_new_workflow("fan", input=4, instance_id=uid("before"))
    assert c.wait_for_workflow_completion(before, timeout_in_seconds=60) is not None
    in_flight = c.schedule_new_workflow("long_step", input=STEP_S, instance_id=uid("step"))
    c.wait_for_workflow_start(in_flight, timeout_in_seconds=60)
    again = [cluster.kill_process(name) for name in MEMBERS]  # its activity runs on
    base = cluster.info["sidecars"][0]["http"]
    with ThreadPoolExecutor(2) as pool:  # each waits out the store client's 10 s deadline
        by_grpc = pool.submit(_grpc_start, c, uid("down"))
        by_http = pool.submit(_http_start, base, uid("down-http"))
        code, details = by_grpc.result(timeout=60)
        status, body = by_http.result(timeout=60)
    assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
    assert details.startswith("the state store is unavailable: etcd"), details
    assert (status, body["errorCode"]) == (503, "ERR_STORE_UNAVAILABLE"), body
    cluster.eventually(  # the in-flight workflow's next turn could not be saved
        "no checkpoint failed", lambda: cluster.metric(FAILURES) > 0, timeout_s=30
    )
    with urllib.request.urlopen(f"{base}/v1.0/healthz", timeout=10) as reply:
        assert reply.status == 204  # placement and reminders still answer
    for start in again:
        start()
    state = c.get_workflow_state(before)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(4))
    resumes(c, in_flight, STEP_S)
