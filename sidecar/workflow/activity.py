"""The activity actor's pure part: one activity invocation and its outcome.

The actor (id `activity_actor_id(instance, task id, generation)`) keeps one key,
`activityState` (msgpack). Its life: `new_activity(dispatch)` is saved, the app runs
the activity, `complete(state, response, now_ms)` records the outcome and yields the
`NotifyWorkflow` to send; once the workflow has it, the shell may delete the key.

Idempotent: dispatching an activity that already exists keeps the stored one
(`accept_dispatch`; a dispatch of another scheduling under the same actor id, after a
purge and a restart of the instance id, replaces it), a second completion is ignored
(the first outcome stands), and `recover` tells a reactivated actor what is left: run
the activity again (at least once, DESIGN 4.2) or re-send its outcome (the workflow
drops duplicates).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.effects import DispatchActivity, NotifyWorkflow
from sidecar.workflow.errors import InvalidResponseError
from sidecar.workflow.events import failure_details, task_completed_event, task_failed_event
from sidecar.workflow.rows import pack_row, unpack_row

__all__ = [
    "ACTIVITY_STATE_KEY",
    "INVALID_ACTIVITY_RESPONSE_ERROR_TYPE",
    "ActivityState",
    "ActivityStatus",
    "accept_dispatch",
    "complete",
    "decode_activity",
    "encode_activity",
    "is_other_scheduling",
    "new_activity",
    "recover",
    "refused_response",
    "response_problem",
]

ACTIVITY_STATE_KEY = "activityState"
INVALID_ACTIVITY_RESPONSE_ERROR_TYPE = "InvalidActivityResponse"
_FORMAT = 1


class ActivityStatus(enum.IntEnum):
    PENDING = 0
    DONE = 1


@dataclass(frozen=True, slots=True)
class ActivityState:
    request: DispatchActivity
    status: ActivityStatus = ActivityStatus.PENDING
    result: str | None = None
    failure: bytes | None = None  # serialized TaskFailureDetails
    completed_ms: int = 0

    def notification(self) -> NotifyWorkflow:
        """The outcome as the event the workflow's inbox takes (DONE only)."""
        if self.status is not ActivityStatus.DONE:
            raise InvalidResponseError("the activity has no outcome yet")
        req = self.request
        if self.failure is not None:
            details = pb.TaskFailureDetails.FromString(self.failure)
            event = task_failed_event(
                req.task_id, details, self.completed_ms, req.task_execution_id
            )
        else:
            event = task_completed_event(
                req.task_id, self.result, self.completed_ms, req.task_execution_id
            )
        return NotifyWorkflow(req.instance_id, req.generation, event)


def new_activity(dispatch: DispatchActivity) -> ActivityState:
    return ActivityState(request=dispatch)


def accept_dispatch(current: ActivityState | None, dispatch: DispatchActivity) -> ActivityState:
    """The state after a (possibly repeated) dispatch: the stored one wins, unless it
    belongs to another scheduling of the same actor id (a purged instance id started
    again: the SDK's task execution ids differ), which must not get the old outcome."""
    if current is None or is_other_scheduling(current, dispatch):
        return new_activity(dispatch)
    return current


def is_other_scheduling(current: ActivityState, dispatch: DispatchActivity) -> bool:
    """Whether `dispatch` schedules something else than `current` holds. Task execution
    ids decide when both have one; otherwise the execution id does."""
    old = current.request
    if old.task_execution_id and dispatch.task_execution_id:
        return old.task_execution_id != dispatch.task_execution_id
    return old.execution_id != dispatch.execution_id


def response_problem(request: DispatchActivity, response: pb.ActivityResponse) -> str | None:
    """Why `response` cannot be the outcome of `request` (None when it can): it names
    another task, or another instance (an empty instance id names none)."""
    if response.taskId != request.task_id or (
        response.instanceId and response.instanceId != request.instance_id
    ):
        return (
            f"activity response for {response.instanceId!r}#{response.taskId} "
            f"given to {request.instance_id!r}#{request.task_id}"
        )
    return None


def refused_response(request: DispatchActivity, problem: str) -> pb.ActivityResponse:
    """The outcome recorded instead of an answer that names another task: a
    non-retriable failure the workflow sees as a TaskFailed, so that it goes on."""
    failed = pb.ActivityResponse(instanceId=request.instance_id, taskId=request.task_id)
    message = f"the app's answer to activity {request.name!r} cannot be applied: {problem}"
    failed.failureDetails.CopyFrom(failure_details(INVALID_ACTIVITY_RESPONSE_ERROR_TYPE, message))
    failed.failureDetails.isNonRetriable = True
    return failed


def complete(
    state: ActivityState, response: pb.ActivityResponse, now_ms: int
) -> tuple[ActivityState, NotifyWorkflow | None]:
    """Record the app's answer. A duplicate answer changes nothing and yields None. An
    answer that names another task or instance (an app's bug: it would hand one task's
    result to another) is recorded as a `refused_response` failure, not dropped: the
    app has let go of the work item, and the workflow would otherwise wait for ever."""
    if state.status is ActivityStatus.DONE:
        return state, None
    problem = response_problem(state.request, response)
    if problem is not None:
        response = refused_response(state.request, problem)
    failure = None
    if response.HasField("failureDetails"):
        failure = response.failureDetails.SerializeToString()
    result = response.result.value if response.HasField("result") else None
    done = replace(
        state,
        status=ActivityStatus.DONE,
        result=None if failure is not None else result,
        failure=failure,
        completed_ms=now_ms,
    )
    return done, done.notification()


def recover(state: ActivityState) -> DispatchActivity | NotifyWorkflow:
    """What a reactivated activity actor must do: run it, or re-send the outcome."""
    if state.status is ActivityStatus.DONE:
        return state.notification()
    return state.request


def encode_activity(state: ActivityState) -> bytes:
    req = state.request
    row = {
        "v": _FORMAT,
        "instance": req.instance_id,
        "exec": req.execution_id,
        "gen": req.generation,
        "task": req.task_id,
        "name": req.name,
        "input": req.input,
        "texec": req.task_execution_id,
        "target": req.target_app_id,
        "version": req.version,
        "status": int(state.status),
        "result": state.result,
        "failure": state.failure,
        "completed": state.completed_ms,
    }
    return pack_row(row)


def decode_activity(raw: bytes) -> ActivityState:
    row = unpack_row(raw, _FORMAT, "activity state")
    request = DispatchActivity(
        instance_id=row["instance"],
        execution_id=row["exec"],
        generation=row["gen"],
        task_id=row["task"],
        name=row["name"],
        input=row["input"],
        task_execution_id=row["texec"],
        target_app_id=row["target"],
        version=row["version"],
    )
    return ActivityState(
        request=request,
        status=ActivityStatus(row["status"]),
        result=row["result"],
        failure=row["failure"],
        completed_ms=row["completed"],
    )
