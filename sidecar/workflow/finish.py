"""How an execution ends: completion, failure, termination, continue-as-new.

- `finish` records ExecutionCompleted, makes the state terminal, drops the inbox and
  yields `Completed` plus `NotifyParent` for a child.
- `settle` is the sidecar-side turn: an ExecutionTerminated in the inbox ends the
  instance at once, without asking the app (its input becomes the output); with
  `recurse`, every child still open gets a recursive `TerminateInstance`. The shell
  calls `settle` before `plan_turn`.
- `continue_as_new` starts the next generation: history emptied, generation + 1, a new
  ExecutionStarted (the new input) at the head of the inbox, then the SDK's carryover
  events, then the undelivered client events (raised events, suspend/resume); completions
  still in the inbox belong to the old generation and are dropped, as are any that
  arrive later (their generation no longer matches). The client requests the old
  history took leave marks (`copies.marks_to_keep`), so that a late copy of one is
  still known.

A child whose start its actor refuses (`child_not_started`) fails its task in the
parent with errorType "ChildWorkflowNotStarted".

A terminated child reports to its parent as ChildWorkflowInstanceFailed with errorType
"WorkflowTerminated" (the parent's `call_child_workflow` raises, as in Durable Task).
"""

from __future__ import annotations

from dataclasses import replace

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.copies import marks_to_keep
from sidecar.workflow.effects import (
    Completed,
    Effect,
    NotifyParent,
    StartChild,
    TerminateInstance,
    TurnResult,
)
from sidecar.workflow.events import (
    child_completed_event,
    child_failed_event,
    event_kind,
    execution_started_event,
    failure_details,
    terminated_event,
    to_timestamp,
)
from sidecar.workflow.state import OpenWork, WorkflowState

__all__ = [
    "CHILD_REFUSED_ERROR_TYPE",
    "INVALID_RESPONSE_ERROR_TYPE",
    "TERMINATED_ERROR_TYPE",
    "child_not_started",
    "continue_as_new",
    "continued_execution_id",
    "fail_instance",
    "failed_answer",
    "finish",
    "notify_parent",
    "settle",
]

TERMINATED_ERROR_TYPE = "WorkflowTerminated"
CHILD_REFUSED_ERROR_TYPE = "ChildWorkflowNotStarted"
INVALID_RESPONSE_ERROR_TYPE = "InvalidWorkflowResponse"

# Inbox events that survive a continue-as-new: they are addressed to the instance, not
# to one execution of it.
_CARRIED_KINDS = frozenset(
    {"eventRaised", "executionSuspended", "executionResumed", "executionTerminated"}
)


def continued_execution_id(instance_id: str, generation: int) -> str:
    """The execution id of a continued-as-new generation (derived, not random: within an
    instance id, generations never repeat)."""
    return f"{instance_id}@{generation}"


def notify_parent(state: WorkflowState, now_ms: int) -> NotifyParent | None:
    """The message that tells a finished child's parent about the outcome."""
    meta = state.metadata
    parent = meta.parent
    if parent is None or meta.terminal_status is None:
        return None
    task_id = parent.task_scheduled_id
    if meta.terminal_status == pb.ORCHESTRATION_STATUS_COMPLETED:
        return NotifyParent(parent, child_completed_event(task_id, meta.output, now_ms))
    failure = meta.failure_details()
    if failure is None:
        failure = failure_details(
            TERMINATED_ERROR_TYPE, f"child workflow {state.instance_id!r} was terminated"
        )
    return NotifyParent(parent, child_failed_event(task_id, failure, now_ms))


def child_not_started(start: StartChild, reason: str, now_ms: int) -> NotifyParent | None:
    """What a parent hears of a child its start was refused to (the child's actor said
    no: a start over the store's limit, a bad id): the child's task fails with
    CHILD_REFUSED_ERROR_TYPE, instead of waiting for a child that never runs. None for
    a workflow started without a parent."""
    if start.parent is None:
        return None
    failure = failure_details(
        CHILD_REFUSED_ERROR_TYPE,
        f"child workflow {start.instance_id!r} could not be started: {reason}",
    )
    failure.isNonRetriable = True
    return NotifyParent(
        start.parent, child_failed_event(start.parent.task_scheduled_id, failure, now_ms)
    )


def fail_instance(state: WorkflowState, error_type: str, message: str, now_ms: int) -> TurnResult:
    """End the execution FAILED for a reason of the engine's, not the app's (an answer
    it cannot apply, a state it cannot save): non-retriable `error_type`, `message`."""
    failure = failure_details(error_type, message)
    failure.isNonRetriable = True
    return finish(state, pb.ORCHESTRATION_STATUS_FAILED, None, failure, now_ms)


def failed_answer(state: WorkflowState, reason: str, now_ms: int) -> TurnResult:
    """The instance FAILED because the app's answer to a turn cannot be applied, for
    `reason` (an action this engine does not know, say): no retry would change it."""
    return fail_instance(
        state, INVALID_RESPONSE_ERROR_TYPE,
        f"the app's answer to a turn cannot be applied: {reason}", now_ms,
    )  # fmt: skip


def finish(
    state: WorkflowState,
    status: int,
    output: str | None,
    failure: pb.TaskFailureDetails | None,
    now_ms: int,
) -> TurnResult:
    """End the execution with a terminal `status` (COMPLETED, FAILED or TERMINATED)."""
    event = pb.HistoryEvent(eventId=-1, timestamp=to_timestamp(now_ms))
    completed = event.executionCompleted
    completed.workflowStatus = status  # type: ignore[assignment]
    if output is not None:
        completed.result.value = output
    if failure is not None:
        completed.failureDetails.CopyFrom(failure)
    metadata = replace(
        state.metadata,
        terminal_status=status,
        output=output,
        failure=failure.SerializeToString() if failure is not None else None,
        completed_ms=now_ms,
        updated_ms=now_ms,
    )
    done = replace(
        state,
        history=(*state.history, event),
        inbox=(),
        inbox_head=state.inbox_head + len(state.inbox),
        metadata=metadata,
        suspended=False,
        stalled=False,
    )
    effects: list[Effect] = [Completed(state.instance_id, status, output, failure)]
    notify = notify_parent(done, now_ms)
    if notify is not None:
        effects.append(notify)
    return TurnResult(done, tuple(effects))


def settle(state: WorkflowState, now_ms: int) -> TurnResult | None:
    """Apply a pending termination, if the inbox holds one (None otherwise)."""
    if state.is_terminal:
        return None
    request = next((e for e in state.inbox if event_kind(e) == "executionTerminated"), None)
    if request is None:
        return None
    terminated = request.executionTerminated
    output = terminated.input.value if terminated.HasField("input") else None
    recorded = replace(state, history=(*state.history, request))
    result = finish(recorded, pb.ORCHESTRATION_STATUS_TERMINATED, output, None, now_ms)
    if not terminated.recurse:
        return result
    children: list[Effect] = [
        TerminateInstance(
            instance_id=created.childWorkflowInstanceCreated.instanceId,
            event=terminated_event(output, now_ms, recurse=True),
            target_app_id=created.router.targetAppID,
        )
        for _, created in sorted(state.open.children.items())
    ]
    return TurnResult(result.state, (*result.effects, *children))


def continue_as_new(
    state: WorkflowState, action: pb.CompleteWorkflowAction, now_ms: int
) -> WorkflowState:
    """The next generation of `state` (whose turn has already been recorded)."""
    generation = state.generation + 1
    execution_id = continued_execution_id(state.instance_id, generation)
    old_start = next((e for e in state.history if event_kind(e) == "executionStarted"), None)
    new_input = action.result.value if action.HasField("result") else None
    started = execution_started_event(
        name=state.metadata.name,
        instance_id=state.instance_id,
        execution_id=execution_id,
        input=new_input,
        now_ms=now_ms,
    )
    if old_start is not None:
        if old_start.executionStarted.HasField("parentInstance"):
            parent = old_start.executionStarted.parentInstance
            started.executionStarted.parentInstance.CopyFrom(parent)
        if old_start.HasField("router"):
            started.router.CopyFrom(old_start.router)
    carried: list[pb.HistoryEvent] = [started]
    for event in action.carryoverEvents:
        copy = pb.HistoryEvent()
        copy.CopyFrom(event)
        carried.append(copy)
    leftover = [e for e in state.inbox if event_kind(e) in _CARRIED_KINDS]
    carried.extend(leftover)
    suspended = False
    for event in leftover:
        kind = event_kind(event)
        if kind in ("executionSuspended", "executionResumed"):
            suspended = kind == "executionSuspended"
    metadata = replace(
        state.metadata,
        execution_id=execution_id,
        input=new_input,
        output=None,
        failure=None,
        updated_ms=now_ms,
    )
    return replace(
        state,
        generation=generation,
        history=(),
        inbox=tuple(carried),
        # Fresh store sequence numbers: the kept inbox is rewritten, never overlaid.
        inbox_head=state.inbox_head + len(state.inbox),
        metadata=metadata,
        open=OpenWork(),
        started=False,
        suspended=suspended,
        stalled=False,
        earlier_requests=marks_to_keep(state, now_ms),
    )
