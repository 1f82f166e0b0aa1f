"""Wire smoke check: the real Dapr workflow SDK against a TaskHub server with no engine.

`NoEngineServicer` keeps started instances in a dict and answers the handful of calls a
client makes (Hello, StartInstance, GetInstance); every other method answers
UNIMPLEMENTED naming the RPC. `run_smoke` starts it on an ephemeral loopback port, drives
it with the SDK's `DaprWorkflowClient` and returns what came back, which proves that
service path, method names, field numbers and types line up end to end. There is no
workflow engine behind it: nothing runs.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.taskhub_wire import taskhub_generic_handler, unknown_method_handler


@dataclass
class NoEngineServicer:
    """Remembers StartInstance requests; GetInstance reports them as pending."""

    started: dict[str, pb.CreateInstanceRequest] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def Hello(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def StartInstance(
        self, request: pb.CreateInstanceRequest, context: grpc.ServicerContext
    ) -> pb.CreateInstanceResponse:
        with self._lock:
            if request.instanceId in self.started:
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"instance {request.instanceId} exists"
                )
            self.started[request.instanceId] = request
        return pb.CreateInstanceResponse(instanceId=request.instanceId)

    def GetInstance(
        self, request: pb.GetInstanceRequest, context: grpc.ServicerContext
    ) -> pb.GetInstanceResponse:
        with self._lock:
            started = self.started.get(request.instanceId)
        if started is None:
            return pb.GetInstanceResponse(exists=False)
        created = timestamp_pb2.Timestamp()
        created.GetCurrentTime()
        state = pb.WorkflowState(
            instanceId=started.instanceId,
            name=started.name,
            workflowStatus=pb.ORCHESTRATION_STATUS_PENDING,
            createdTimestamp=created,
            lastUpdatedTimestamp=created,
        )
        if request.getInputsAndOutputs and started.HasField("input"):
            state.input.CopyFrom(started.input)
        state.customStatus.CopyFrom(wrappers_pb2.StringValue(value='"no engine"'))
        return pb.GetInstanceResponse(exists=True, workflowState=state)


def serve_no_engine(servicer: NoEngineServicer, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((taskhub_generic_handler(servicer), unknown_method_handler()))
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    return server, port


@dataclass(frozen=True)
class SmokeResult:
    instance_id: str
    seen_name: str
    seen_input: str
    state_name: str
    state_status: str
    state_input: Any
    raise_event_code: str
    raise_event_details: str


def run_smoke(instance_id: str = "smoke-1") -> SmokeResult:
    """Drive a fresh no-engine server with the real SDK client; return what both saw."""
    from dapr.ext.workflow import DaprWorkflowClient

    servicer = NoEngineServicer()
    server, port = serve_no_engine(servicer)
    try:
        client = DaprWorkflowClient(host="127.0.0.1", port=str(port))
        try:
            got_id = client.schedule_new_workflow(
                "order_processing", input={"item": "book", "qty": 2}, instance_id=instance_id
            )
            state = client.get_workflow_state(got_id, fetch_payloads=True)
            try:
                client.raise_workflow_event(got_id, "approved", data=True)
                code, details = "OK", ""
            except grpc.RpcError as err:
                code, details = err.code().name, str(err.details())
        finally:
            client.close()
    finally:
        server.stop(grace=None)
    seen = servicer.started[got_id]
    assert state is not None, "GetInstance answered exists=False for a started instance"
    return SmokeResult(
        instance_id=got_id,
        seen_name=seen.name,
        seen_input=seen.input.value,
        state_name=state.name,
        state_status=state.runtime_status.name,
        state_input=state.serialized_input,
        raise_event_code=code,
        raise_event_details=details,
    )


def main() -> int:
    result = run_smoke()
    print("actorflow wire smoke: the Dapr SDK's DaprWorkflowClient against a no-engine server")
    print(f"  StartInstance   -> instance id {result.instance_id!r}")
    print(f"  server received -> name {result.seen_name!r}, input {result.seen_input}")
    print(f"  GetInstance     -> name {result.state_name!r}, status {result.state_status}")
    print(f"                     input {result.state_input}")
    print(f"  RaiseEvent      -> {result.raise_event_code}: {result.raise_event_details}")
    return 0
