"""End to end on the wire: the real Dapr SDK client against our generated messages,
served under the SDK's paths by a server with no engine behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import empty_pb2

from actorflow.smoke import NoEngineServicer, run_smoke, serve_no_engine
from sidecar import taskhub_stub
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb


def test_sdk_client_round_trip() -> None:
    result = run_smoke("order-42")
    assert result.instance_id == "order-42"
    assert result.seen_name == "order_processing"
    assert json.loads(result.seen_input) == {"item": "book", "qty": 2}
    assert result.state_name == "order_processing"
    assert result.state_status == "PENDING"
    assert json.loads(result.state_input) == {"item": "book", "qty": 2}
    assert result.raise_event_code == "UNIMPLEMENTED"
    assert "RaiseEvent" in result.raise_event_details


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    server, port = serve_no_engine(NoEngineServicer())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(grace=None)


def test_our_stub_speaks_the_sdk_paths(channel: grpc.Channel) -> None:
    stub = taskhub_stub(channel)
    assert stub["Hello"](empty_pb2.Empty()) == empty_pb2.Empty()
    got = stub["StartInstance"](pb.CreateInstanceRequest(instanceId="a", name="wf"))
    assert got.instanceId == "a"
    with pytest.raises(grpc.RpcError) as err:
        stub["StartInstance"](pb.CreateInstanceRequest(instanceId="a", name="wf"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = stub["GetInstance"](pb.GetInstanceRequest(instanceId="nope"))
    assert not missing.exists


def test_unknown_method_is_unimplemented_and_named(channel: grpc.Channel) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/TaskHubSidecarService/AbandonTaskActivityWorkItem"
    )
    with pytest.raises(grpc.RpcError) as err:
        call(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "AbandonTaskActivityWorkItem" in str(err.value.details())


def test_malformed_request_bytes_are_refused(channel: grpc.Channel) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/TaskHubSidecarService/StartInstance"
    )
    with pytest.raises(grpc.RpcError) as err:
        call(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "StartInstance: the request is not a valid CreateInstanceRequest" in str(
        err.value.details()
    )
    # The server keeps serving.
    assert taskhub_stub(channel)["Hello"](empty_pb2.Empty()) == empty_pb2.Empty()
