"""The SDK's actions as history events, and history events as effects.

`record_action` turns one `WorkflowAction` into the history event that confirms it
(its `eventId` is the action id, which is what the SDK matches on replay).
`effect_for` turns such a history event back into the effect that carries it out; the
turn uses it for fresh actions and `pending_work` for recovery, so both always agree.
"""

from __future__ import annotations

from google.protobuf.message import Message

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.effects import (
    DispatchActivity,
    Effect,
    ScheduleTimer,
    SendEvent,
    StartChild,
)
from sidecar.workflow.errors import InvalidResponseError
from sidecar.workflow.events import (
    OPTIONAL_TIMER_SECONDS,
    due_ms,
    event_kind,
    execution_started_event,
    raised_event,
    timestamp_ms,
    timestamp_problem,
    to_timestamp,
)
from sidecar.workflow.state import ParentInfo, WorkflowState

__all__ = ["child_execution_id", "effect_for", "is_recorded", "record_action"]

# Actions that are confirmed by a history event carrying the action id.
_RECORDED = ("scheduleTask", "createTimer", "createChildWorkflow", "sendEvent")


def child_execution_id(parent_execution_id: str, task_id: int) -> str:
    """A child's execution id, derived (no randomness in the core): unique because the
    parent's execution id is unique and task ids are unique within an execution."""
    return f"{parent_execution_id}/{task_id}"


def _copy_optional(name: str, dst: Message, src: Message) -> None:
    if src.HasField(name):
        getattr(dst, name).CopyFrom(getattr(src, name))


def record_action(action: pb.WorkflowAction, now_ms: int) -> pb.HistoryEvent:
    """The history event for a scheduleTask, createTimer, createChildWorkflow or
    sendEvent action."""
    kind = action.WhichOneof("workflowActionType")
    event = pb.HistoryEvent(eventId=action.id, timestamp=to_timestamp(now_ms))
    if action.HasField("router"):
        event.router.CopyFrom(action.router)
    if kind == "scheduleTask":
        task = action.scheduleTask
        scheduled = event.taskScheduled
        scheduled.name = task.name
        scheduled.taskExecutionId = task.taskExecutionId
        scheduled.historyPropagationScope = task.historyPropagationScope
        for name in ("version", "input"):
            _copy_optional(name, scheduled, task)
    elif kind == "createTimer":
        _record_timer(action, event.timerCreated)
    elif kind == "createChildWorkflow":
        child = action.createChildWorkflow
        created_child = event.childWorkflowInstanceCreated
        created_child.instanceId = child.instanceId
        created_child.name = child.name
        created_child.historyPropagationScope = child.historyPropagationScope
        for name in ("version", "input"):
            _copy_optional(name, created_child, child)
    elif kind == "sendEvent":
        send = action.sendEvent
        event.eventSent.instanceId = send.instance.instanceId
        event.eventSent.name = send.name
        if send.HasField("data"):
            event.eventSent.input.CopyFrom(send.data)
    else:
        raise InvalidResponseError(f"action {kind!r} has no history event of its own")
    return event


def _record_timer(action: pb.WorkflowAction, created: pb.TimerCreatedEvent) -> None:
    timer = action.createTimer
    problem = timestamp_problem(timer.fireAt)
    if problem is not None and timer.fireAt.seconds < OPTIONAL_TIMER_SECONDS:
        # (past 9999-12-31 is the SDK's "never" timer: kept, and never armed)
        raise InvalidResponseError(f"createTimer {action.id}: fireAt has {problem}")
    created.fireAt.CopyFrom(timer.fireAt)
    created.name = timer.name
    origin = timer.WhichOneof("origin")
    if origin is not None:
        getattr(created, origin).CopyFrom(getattr(timer, origin))


def _optional(msg: Message, name: str) -> str | None:
    if msg.HasField(name):
        value: str = getattr(msg, name).value
        return value
    return None


def _dispatch(state: WorkflowState, event: pb.HistoryEvent, fresh: bool) -> DispatchActivity:
    task = event.taskScheduled
    return DispatchActivity(
        instance_id=state.instance_id,
        execution_id=state.metadata.execution_id,
        generation=state.generation,
        task_id=event.eventId,
        name=task.name,
        input=_optional(task, "input"),
        task_execution_id=task.taskExecutionId,
        target_app_id=event.router.targetAppID,
        version=_optional(task, "version"),
        fresh=fresh,
    )


def _start_child(state: WorkflowState, event: pb.HistoryEvent) -> StartChild:
    child = event.childWorkflowInstanceCreated
    parent = ParentInfo(
        instance_id=state.instance_id,
        execution_id=state.metadata.execution_id,
        task_scheduled_id=event.eventId,
        name=state.metadata.name,
        app_id=event.router.sourceAppID,
    )
    router = pb.TaskRouter(
        sourceAppID=event.router.sourceAppID, targetAppID=event.router.targetAppID
    )
    started = execution_started_event(
        name=child.name,
        instance_id=child.instanceId,
        execution_id=child_execution_id(state.metadata.execution_id, event.eventId),
        input=_optional(child, "input"),
        now_ms=timestamp_ms(event.timestamp),
        parent=parent.to_proto(),
        router=router if event.HasField("router") else None,
    )
    if child.HasField("version"):
        started.executionStarted.version.CopyFrom(child.version)
    return StartChild(
        instance_id=child.instanceId,
        name=child.name,
        event=started,
        parent=parent,
        target_app_id=event.router.targetAppID,
    )


def effect_for(
    state: WorkflowState, event: pb.HistoryEvent, *, fresh: bool = False
) -> Effect | None:
    """The effect that carries out a recorded action (None: nothing to do, such as the
    SDK's optional timer, which never fires). `fresh`: the action was recorded by the
    turn at hand (not derived again from stored state)."""
    kind = event_kind(event)
    if kind == "taskScheduled":
        return _dispatch(state, event, fresh)
    if kind == "timerCreated":
        fire_at = event.timerCreated.fireAt
        if fire_at.seconds >= OPTIONAL_TIMER_SECONDS:
            return None
        return ScheduleTimer(
            instance_id=state.instance_id,
            generation=state.generation,
            timer_id=event.eventId,
            fire_at_ms=due_ms(fire_at),
        )
    if kind == "childWorkflowInstanceCreated":
        return _start_child(state, event)
    if kind == "eventSent":
        sent = event.eventSent
        return SendEvent(
            instance_id=sent.instanceId,
            event=raised_event(sent.name, _optional(sent, "input"), timestamp_ms(event.timestamp)),
            target_app_id=event.router.targetAppID,
        )
    raise InvalidResponseError(f"no effect for a {kind} event")


def is_recorded(kind: str | None) -> bool:
    return kind in _RECORDED
