"""A sidecar with a call timeout shorter than a wait's hold (`--call-timeout` 1 s,
through `ACTORFLOW_SIDECAR_CALL_TIMEOUT`; a wait is held up to 10 s per actor call):
one WaitForInstanceCompletion call, with no client retry, for a workflow that runs
3 s answers with its completion, not with the deadline's UNAVAILABLE."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "env": {"ACTORFLOW_SIDECAR_CALL_TIMEOUT": "1"}}


def test_one_wait_outlasts_a_short_call_timeout(cluster: Any, uid: Any) -> None:
    iid = cluster.client(0).schedule_new_workflow(
        "timed", input=3.0, instance_id=uid("short-timeout")
    )
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        wait = channel.unary_unary(
            "/TaskHubSidecarService/WaitForInstanceCompletion",
            request_serializer=taskhub_pb2.GetInstanceRequest.SerializeToString,
            response_deserializer=taskhub_pb2.GetInstanceResponse.FromString,
        )
        answer = wait(taskhub_pb2.GetInstanceRequest(instanceId=iid), timeout=60)
    assert answer.exists
    assert answer.workflowState.workflowStatus == taskhub_pb2.ORCHESTRATION_STATUS_COMPLETED
