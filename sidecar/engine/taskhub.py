"""The app-facing Durable Task service (DESIGN.md 3.1) on top of the workflow actors.

Client calls go to the instance's workflow actor through the router, wherever placement
put it; work items flow over `AppConnections`. This module is the gRPC edge of the
engine: it alone turns actor errors (`ActorCallError` messages start with a status name)
into gRPC status codes (`actor_status`: the actor host prefixes what an actor raises
with `ActorCallError: `, so the status name is found after it).

RerunWorkflowFromEvent reads the source (GetInstance and its history) and hands both to
the new instance's actor, which builds its state with the core's `rerun_from`.
PurgeInstances passes `recursive` on: each workflow actor purges its children first.

Waiting (WaitForInstanceStart/Completion) is a `wait` call to the instance's actor,
wherever it lives: the actor answers when a change it makes passes the test, or after
WAIT_CHUNK_S with the state as it is, and the wait is asked again (through the router, so
it follows the instance when placement moves it). Nothing polls, and nothing scans the
store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import msgpack
from google.protobuf import empty_pb2

from sidecar.actors.base import ActorCallError, ActorUnavailableError, UnknownActorTypeError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AnswerKindError
from sidecar.engine.arrivals import arrival_ns
from sidecar.engine.naming import (
    index_prefix,
    instance_id_problem,
    name_problem,
    workflow_type,
)
from sidecar.engine.outages import STORE_OUTAGES, store_outage, unwrapped
from sidecar.workflow.events import (
    client_raised_event,
    execution_started_event,
    resumed_event,
    stamped,
    suspended_event,
    terminated_event,
    timestamp_problem,
)

Context = grpc.aio.ServicerContext[Any, Any]
TERMINAL = {
    pb.ORCHESTRATION_STATUS_COMPLETED,
    pb.ORCHESTRATION_STATUS_FAILED,
    pb.ORCHESTRATION_STATUS_TERMINATED,
}
WAIT_CHUNK_S = 10.0  # a waiting call asks the instance's actor again this often


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def actor_status(error: ActorCallError) -> tuple[grpc.StatusCode, str]:
    """The status code an actor's error names (its message starts with one, after the
    `ActorCallError: ` the actor host prefixes to whatever an actor raises)."""
    text = unwrapped(error)
    code, _, message = text.partition(": ")
    if store_outage(error):
        if code not in STORE_OUTAGES:  # the actor's activation met it: say so
            message = text
        return grpc.StatusCode.UNAVAILABLE, f"the state store is unavailable: {message}"
    status = getattr(grpc.StatusCode, code, None)
    if not isinstance(status, grpc.StatusCode) or status is grpc.StatusCode.OK:
        return grpc.StatusCode.INTERNAL, text
    return status, message


def _router(request: Any) -> pb.TaskRouter | None:
    router: pb.TaskRouter | None = request.router if request.HasField("router") else None
    return router


def _opt(value: Any, field: str) -> str | None:
    return str(getattr(value, field).value) if value.HasField(field) else None


class TaskHubService:
    def __init__(self, services: Any) -> None:
        self._s = services

    # ---- plumbing

    def _wf_type(self, router: pb.TaskRouter | None = None) -> str:
        app = router.targetAppID if router is not None and router.HasField("targetAppID") else ""
        return workflow_type(self._s.namespace, app or self._s.app_id)

    async def _call(
        self, context: Context, instance_id: str, method: str, payload: bytes,
        router: pb.TaskRouter | None = None, *, timeout_s: float | None = None,
    ) -> bytes:  # fmt: skip
        problem = instance_id_problem(instance_id)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            result: bytes = await self._s.router.call(
                self._wf_type(router), instance_id, method, payload, timeout_s=timeout_s
            )
            return result
        except ActorCallError as exc:
            await context.abort(*actor_status(exc))
        except UnknownActorTypeError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no sidecar hosts it: {exc}")
        except ActorUnavailableError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable")

    async def _event(self, context: Context, instance_id: str, event: pb.HistoryEvent,
                     router: pb.TaskRouter | None = None) -> None:  # fmt: skip
        payload = msgpack.packb({"e": event.SerializeToString(), "durable": True})
        await self._call(context, instance_id, "event", payload, router)

    async def _get(self, context: Context, instance_id: str, io: bool,
                   router: pb.TaskRouter | None = None) -> pb.GetInstanceResponse:  # fmt: skip
        raw = await self._call(context, instance_id, "get", msgpack.packb(io), router)
        return pb.GetInstanceResponse.FromString(raw)

    # ---- RPCs

    async def Hello(self, request: empty_pb2.Empty, context: Context) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def StartInstance(
        self, request: pb.CreateInstanceRequest, context: Context
    ) -> pb.CreateInstanceResponse:
        instance_id = request.instanceId or uuid.uuid4().hex
        problem = name_problem("name", request.name)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        event = execution_started_event(
            name=request.name,
            instance_id=instance_id,
            execution_id="",
            input=_opt(request, "input"),
            now_ms=_now_ms(),
            router=request.router if request.HasField("router") else None,
        )
        if request.HasField("scheduledStartTimestamp"):
            problem = timestamp_problem(request.scheduledStartTimestamp)
            if problem is not None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"scheduledStartTimestamp has {problem}"
                )
            event.executionStarted.scheduledStartTimestamp.CopyFrom(request.scheduledStartTimestamp)
        event.executionStarted.tags.update(request.tags)
        payload = msgpack.packb({"e": event.SerializeToString()})
        router = request.router if request.HasField("router") else None
        await self._call(context, instance_id, "start", payload, router)
        return pb.CreateInstanceResponse(instanceId=instance_id)

    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: Context
    ) -> pb.GetInstanceResponse:
        router = request.router if request.HasField("router") else None
        return await self._get(context, request.instanceId, request.getInputsAndOutputs, router)

    async def _wait(
        self, request: pb.GetInstanceRequest, context: Context, test: str
    ) -> pb.GetInstanceResponse:
        router = request.router if request.HasField("router") else None
        payload = msgpack.packb(
            {"test": test, "io": request.getInputsAndOutputs, "s": WAIT_CHUNK_S}
        )
        # The actor holds each call up to WAIT_CHUNK_S: the call's deadline is that plus
        # the usual time to reach the owner, however short `--call-timeout` is.
        timeout_s = WAIT_CHUNK_S + self._s.router.default_timeout_s
        while True:
            answer = msgpack.unpackb(
                await self._call(
                    context, request.instanceId, "wait", payload, router, timeout_s=timeout_s
                )
            )
            if answer["passed"]:
                return pb.GetInstanceResponse.FromString(answer["r"])

    async def WaitForInstanceStart(
        self, request: pb.GetInstanceRequest, context: Context
    ) -> pb.GetInstanceResponse:
        return await self._wait(request, context, "started")

    async def WaitForInstanceCompletion(
        self, request: pb.GetInstanceRequest, context: Context
    ) -> pb.GetInstanceResponse:
        return await self._wait(request, context, "completed")

    async def RaiseEvent(
        self, request: pb.RaiseEventRequest, context: Context
    ) -> pb.RaiseEventResponse:
        problem = name_problem("name", request.name)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        event = client_raised_event(request.name, _opt(request, "input"), arrival_ns())
        await self._event(
            context,
            request.instanceId,
            event,
            request.router if request.HasField("router") else None,
        )
        return pb.RaiseEventResponse()

    async def TerminateInstance(
        self, request: pb.TerminateRequest, context: Context
    ) -> pb.TerminateResponse:
        event = terminated_event(_opt(request, "output"), _now_ms(), recurse=request.recursive)
        await self._event(
            context,
            request.instanceId,
            event,
            request.router if request.HasField("router") else None,
        )
        return pb.TerminateResponse()

    async def SuspendInstance(
        self, request: pb.SuspendRequest, context: Context
    ) -> pb.SuspendResponse:
        event = stamped(suspended_event(_opt(request, "reason"), 0), arrival_ns())
        await self._event(context, request.instanceId, event, _router(request))
        return pb.SuspendResponse()

    async def ResumeInstance(
        self, request: pb.ResumeRequest, context: Context
    ) -> pb.ResumeResponse:
        event = stamped(resumed_event(_opt(request, "reason"), 0), arrival_ns())
        await self._event(context, request.instanceId, event, _router(request))
        return pb.ResumeResponse()

    async def PurgeInstances(
        self, request: pb.PurgeInstancesRequest, context: Context
    ) -> pb.PurgeInstancesResponse:
        if request.WhichOneof("request") != "instanceId":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "purge by filter is not supported")
        router = request.router if request.HasField("router") else None
        payload = msgpack.packb({"r": request.recursive})
        raw = await self._call(context, request.instanceId, "purge", payload, router)
        deleted = int(raw or b"0")
        response = pb.PurgeInstancesResponse(deletedInstanceCount=deleted)
        response.isComplete.value = True
        return response

    async def GetWorkItems(
        self, request: pb.GetWorkItemsRequest, context: Context
    ) -> AsyncIterator[pb.WorkItem]:
        stateful = pb.WORKER_CAPABILITY_STATEFUL_HISTORY in request.capabilities
        async for item in self._s.apps.stream(stateful_history=stateful):
            yield item

    async def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: Context
    ) -> pb.CompleteTaskResponse:
        return await self._complete(request, context)

    async def CompleteOrchestratorTask(
        self, request: pb.WorkflowResponse, context: Context
    ) -> pb.CompleteTaskResponse:
        return await self._complete(request, context)

    async def _complete(
        self, request: pb.WorkflowResponse | pb.ActivityResponse, context: Context
    ) -> pb.CompleteTaskResponse:
        """An answer to the work item its token names (one for an item no one waits
        for, a duplicate say, is taken and dropped)."""
        try:
            self._s.apps.complete(request.completionToken, request)
        except AnswerKindError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.CompleteTaskResponse()

    CompleteWorkflowTask = CompleteOrchestratorTask

    async def ListInstanceIDs(
        self, request: pb.ListInstanceIDsRequest, context: Context
    ) -> pb.ListInstanceIDsResponse:
        prefix = index_prefix(self._s.app_id)
        rows = await self._s.store.scan_prefix(prefix)
        ids = [key[len(prefix) :] for key, _ in rows]
        start = request.continuationToken if request.HasField("continuationToken") else ""
        ids = [i for i in ids if i > start]
        size = request.pageSize if request.HasField("pageSize") and request.pageSize else 1000
        page = ids[:size]
        response = pb.ListInstanceIDsResponse(instanceIds=page)
        if len(ids) > size:
            response.continuationToken = page[-1]
        return response

    async def GetInstanceHistory(
        self, request: pb.GetInstanceHistoryRequest, context: Context
    ) -> pb.GetInstanceHistoryResponse:
        raw = await self._call(context, request.instanceId, "history", b"")
        return pb.GetInstanceHistoryResponse.FromString(raw)

    async def RerunWorkflowFromEvent(
        self, request: pb.RerunWorkflowFromEventRequest, context: Context
    ) -> pb.RerunWorkflowFromEventResponse:
        """A new instance replaying the source's history up to a TaskScheduled event
        (the pure core's `rerun_from`); the source is left as it is."""
        router = _router(request)
        source = await self._get(context, request.sourceInstanceID, True, router)
        ws = source.workflowState
        if not source.exists:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such source instance")
        if ws.workflowStatus not in TERMINAL or ws.HasField("parentInstanceId"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "only a finished instance that is not a child workflow can be rerun",
            )
        new_id = request.newInstanceID or uuid.uuid4().hex
        if new_id == request.sourceInstanceID:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a rerun needs a new id")
        history = await self._call(context, request.sourceInstanceID, "history", b"", router)
        new_input = _opt(request, "input") if request.overwriteInput else None
        payload = msgpack.packb({
            "src": request.sourceInstanceID, "h": history, "event": request.eventID,
            "name": ws.name, "in": _opt(ws, "input"), "status": ws.workflowStatus,
            "new_in": new_input,
        })  # fmt: skip
        await self._call(context, new_id, "rerun", payload, router)
        return pb.RerunWorkflowFromEventResponse(newInstanceID=new_id)
