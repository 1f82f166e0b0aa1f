"""The workflow engine end to end: `actorflow up` with 2 sidecars, one app process (the
real Dapr SDK, unchanged) beside each, clients through the SDK's DaprWorkflowClient
(harness: conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus
from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.api.taskhub.v1 import taskhub_pb2
from sidecar.taskhub_wire import taskhub_stub

pytestmark = pytest.mark.slow


def test_fan_out_and_in(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    iid = c.schedule_new_workflow("fan", input=100, instance_id=uid("fan"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(100))


def test_waits_through_any_sidecar_are_held_by_the_instance_owner(cluster: Any, uid: Any) -> None:
    """A client may wait through a sidecar that does not host the instance: its wait is
    held by the instance's actor on the owner, and answered by the save that finishes
    the instance, not found later by polling."""
    iid = cluster.client(0).schedule_new_workflow("waits", instance_id=uid("held"))
    clients = [cluster.client(i) for i in range(len(cluster.info["sidecars"]))]
    with ThreadPoolExecutor(len(clients)) as pool:
        waiting = [
            pool.submit(c.wait_for_workflow_completion, iid, timeout_in_seconds=60) for c in clients
        ]
        held = cluster.held_waits(len(clients))
        assert sorted(held) == [0] * (len(clients) - 1) + [len(clients)]  # all on the owner
        clients[-1].raise_workflow_event(iid, "release", data="go")
        states = [w.result(timeout=30) for w in waiting]
    for state in states:
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
        assert json.loads(state.serialized_output) == "go"
    assert cluster.waiting_callers() == [0] * len(clients)


def test_a_long_wait_survives_the_clients_keepalive_pings(cluster: Any, uid: Any) -> None:
    """The SDK's channels ping every 30 s, with or without calls in flight; a sidecar
    with gRPC's default policy answered the third ping without data with GOAWAY
    ("too_many_pings"): the connection closed once its calls ended, and the client
    logged an error and connected again (seen after a client waited a minute and a
    half). Here a client pings every 200 ms through a held wait, and its connection
    stays up."""
    iid = cluster.client(0).schedule_new_workflow("waits", instance_id=uid("pinged"))
    channel = grpc.insecure_channel(
        cluster.info["sidecars"][0]["grpc"],
        options=[
            ("grpc.keepalive_time_ms", 200),
            ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    wait = channel.unary_unary(
        "/TaskHubSidecarService/WaitForInstanceCompletion",
        request_serializer=taskhub_pb2.GetInstanceRequest.SerializeToString,
        response_deserializer=taskhub_pb2.GetInstanceResponse.FromString,
    )
    states: list[grpc.ChannelConnectivity] = []
    channel.subscribe(states.append, try_to_connect=True)
    with channel, ThreadPoolExecutor(1) as pool:
        request = taskhub_pb2.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True)
        waiting = pool.submit(wait, request, timeout=60)
        cluster.held_waits(1)
        # Pings for 6 s with no data on the connection (the default policy closed it
        # well within that); the wait stays held.
        with pytest.raises(FutureTimeout):
            waiting.result(timeout=6.0)
        cluster.client(0).raise_workflow_event(iid, "release", data="still here")
        answer = waiting.result(timeout=30)
        ready = states.index(grpc.ChannelConnectivity.READY)
        assert states[ready:] == [grpc.ChannelConnectivity.READY]  # never dropped
    assert answer.exists
    assert answer.workflowState.workflowStatus == taskhub_pb2.ORCHESTRATION_STATUS_COMPLETED


def test_durable_timer_then_external_event_and_custom_status(cluster: Any, uid: Any) -> None:
    c = cluster.client(1)
    iid = c.schedule_new_workflow("timer_then_event", input=0.3, instance_id=uid("tt"))
    deadline = time.monotonic() + 30
    while True:
        state = c.get_workflow_state(iid)
        if state is not None and state.serialized_custom_status:
            break
        assert time.monotonic() < deadline, "the timer never fired"
        time.sleep(0.05)  # polling the workflow's status through the API
    assert state.serialized_custom_status == "waiting for go"  # str: stored as given
    c.raise_workflow_event(iid, "go", data={"ok": 1})
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"got": {"ok": 1}}


def test_activity_failure_surfaces_with_details(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    iid = c.schedule_new_workflow("fails", input="boom 42", instance_id=uid("fails"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert "boom 42" in state.failure_details.message


def test_suspend_resume_terminate_purge(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    iid = c.schedule_new_workflow("waits", input=None, instance_id=uid("waits"))
    running = c.wait_for_workflow_start(iid, timeout_in_seconds=30)
    assert running is not None
    c.pause_workflow(iid)
    c.raise_workflow_event(iid, "release", data="held")
    state = c.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED
    assert state.last_updated_at > running.last_updated_at  # the suspend is a change
    c.resume_workflow(iid)
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "held"

    other = c.schedule_new_workflow("waits", input=None, instance_id=uid("term"))
    c.wait_for_workflow_start(other, timeout_in_seconds=30)
    c.terminate_workflow(other, output="stopped")
    state = c.wait_for_workflow_completion(other, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    c.purge_workflow(other)
    assert c.get_workflow_state(other) is None


def test_sidecar_sigkill_during_a_1000_activity_fan_out(cluster: Any, uid: Any) -> None:
    info = cluster.info
    c = cluster.client(0)
    iid = c.schedule_new_workflow("fan", input=1000, instance_id=uid("kill"))
    time.sleep(0.5)  # let the fan-out get going: the kill must land mid-run
    victim = info["sidecars"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(1000))


@pytest.mark.parametrize(
    ("method", "request_", "detail"),
    [
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="no-name"),
         "name is required"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="a||b", name="fan"),
         "instanceId is invalid"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="x" * 257, name="fan"),
         "instanceId is invalid"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="a\x00b", name="fan"),
         "control or unprintable"),
        ("GetInstance", taskhub_pb2.GetInstanceRequest(instanceId="tab\there"),
         "control or unprintable"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(  # GetInstance failed on it for good
            instanceId="year-36812", name="fan",
            scheduledStartTimestamp=Timestamp(seconds=2**40)), "scheduledStartTimestamp has"),
        ("RaiseEvent", taskhub_pb2.RaiseEventRequest(instanceId="someone"), "name is required"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="long-name", name="f" * 257),
         "invalid name"),
        ("StartInstance", taskhub_pb2.CreateInstanceRequest(instanceId="nl-name", name="f\nx"),
         "invalid name"),
        ("RaiseEvent", taskhub_pb2.RaiseEventRequest(instanceId="someone", name="e" * 257),
         "invalid name"),
    ],
)  # fmt: skip
def test_bad_requests_are_invalid_argument_and_change_nothing(
    cluster: Any, method: str, request_: Any, detail: str
) -> None:
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        call = channel.unary_unary(
            f"/TaskHubSidecarService/{method}",
            request_serializer=type(request_).SerializeToString,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (err.value.details() or "")
    # The sidecar goes on serving; a refused start under a usable id created nothing
    # (an unusable id cannot be read back at all: every call naming it is refused).
    iid = request_.instanceId
    usable = iid.isprintable() and len(iid) <= 256 and "||" not in iid
    assert cluster.client(0).get_workflow_state(iid if usable else "never-started") is None


@pytest.mark.parametrize("method", ["StartInstance", "RaiseEvent", "GetWorkItems"])
def test_request_bytes_that_do_not_parse_are_invalid_argument(cluster: Any, method: str) -> None:
    """grpc answered UNKNOWN ("Exception deserializing request!") before; now the RPC and
    the message it expected are named, for unary and streaming methods alike."""
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        kind = channel.unary_stream if method == "GetWorkItems" else channel.unary_unary
        call: Any = kind(f"/TaskHubSidecarService/{method}")
        with pytest.raises(grpc.RpcError) as err:
            result = call(b"\xff\xff\xff\xff", timeout=30)
            if method == "GetWorkItems":
                next(iter(result))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert f"{method}: the request is not a valid" in (err.value.details() or "")
    assert cluster.client(0).get_workflow_state("never-started") is None  # still serving


def test_peer_requests_that_do_not_parse_are_invalid_argument(cluster: Any) -> None:
    """The peer API shares the sidecar's gRPC port with the app API: a stream batch that
    did not parse used to kill its reader silently and leave the call hanging."""
    peer = "/actorflow.sidecar.v1.ActorPeer"
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        unary: Any = channel.unary_unary(f"{peer}/CallActor")
        with pytest.raises(grpc.RpcError) as err:
            unary(b"\xff\xff\xff\xff", timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        stream: Any = channel.stream_stream(f"{peer}/CallActorStream")
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([b"\xff\xff\xff\xff"]), timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert "CallActorStream: the request is not a valid ActorCallBatch" in str(
            err.value.details()
        )
    assert cluster.client(0).get_workflow_state("never-started") is None  # still serving


def test_an_id_any_api_takes_is_named_by_every_api(cluster: Any, uid: Any) -> None:
    """An instance started through the SDK under an id with a space, a slash and a
    non-ASCII letter is read, steered and purged over HTTP (percent-encoded); the HTTP
    API refused such ids before (only letters, digits and `_ . : @ -`)."""
    c = cluster.client(0)
    iid = uid("order 42/é")
    c.schedule_new_workflow("waits", instance_id=iid)
    c.wait_for_workflow_start(iid, timeout_in_seconds=30)
    http = cluster.info["sidecars"][0]["http"]  # (sidecar 1 is killed by a test above)
    path = f"{http}/v1.0/workflows/dapr/{urllib.parse.quote(iid, safe='')}"
    with urllib.request.urlopen(path, timeout=30) as resp:
        assert json.loads(resp.read())["instanceID"] == iid
    raised = urllib.request.Request(f"{path}/raiseEvent/release", data=b'"x"', method="POST")
    with urllib.request.urlopen(raised, timeout=30) as resp:
        assert resp.status == 202
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and json.loads(state.serialized_output) == "x"
    purge = urllib.request.Request(f"{path}/purge", method="POST")
    with urllib.request.urlopen(purge, timeout=30) as resp:
        assert resp.status == 200
    assert c.get_workflow_state(iid) is None


def test_a_child_id_no_api_could_name_fails_the_childs_task(cluster: Any, uid: Any) -> None:
    """A child id is chosen by the workflow's code and reaches the sidecar in a turn's
    answer, past the client APIs' checks. `p||x` would share the store rows of instance
    `p` (a purge of `p` deleted them); it is refused, and the parent's task fails."""
    c = cluster.client(0)
    parent = uid("bad-child")
    for i, child_id in enumerate((f"{parent}||x", f"{parent}\tx")):
        args = {"child_input": 1, "child_id": child_id}
        iid = c.schedule_new_workflow("sized", input=args, instance_id=f"{parent}-{i}")
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        out = json.loads(state.serialized_output)
        assert out["caught"] == "ChildWorkflowNotStarted", out
        assert "instanceId" in out["message"], out


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "NaN", '{"x": [1, -Infinity]}'],
    ids=["deep", "nan", "inf"],
)
def test_an_input_that_is_not_strict_json_is_shown_over_http_as_its_text(
    cluster: Any, uid: Any, text: str
) -> None:
    """The gRPC API stores an input as the text it got (here for a workflow no app has,
    which fails). The HTTP GET, which shows inputs as JSON where it can, answered 500
    for one nested too deep for the parser (a RecursionError), and for NaN or Infinity,
    which Python's parser takes, a body that is not JSON: now the text itself."""
    iid = uid("odd")
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        request = taskhub_pb2.CreateInstanceRequest(instanceId=iid, name="echo_wf")
        request.input.value = text
        taskhub_stub(channel)["StartInstance"](request, timeout=30)
    http = cluster.info["sidecars"][0]["http"]
    with urllib.request.urlopen(f"{http}/v1.0/workflows/echo_wf/{iid}", timeout=30) as resp:
        assert resp.status == 200
        assert json.loads(resp.read(), parse_constant=_not_json)["input"] == text


def _not_json(name: str) -> None:
    raise AssertionError(f"the sidecar answered {name}, which is not JSON")
