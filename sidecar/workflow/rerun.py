"""RerunWorkflowFromEvent: a new instance that replays a finished one up to an activity.

`rerun_from(source, event_id, new_instance_id, new_input, now_ms)` builds the new
instance's state: the source's history up to and including the TaskScheduled event whose
eventId is `event_id`, with that activity's input replaced when `new_input` is given and
the ExecutionStarted re-addressed to the new instance. Nothing after that event is kept,
so that activity, and any other scheduled before it whose completion came after it, is
open again: `pending_work` on the new state dispatches them. Actions the same turn
issued after the chosen one are not in the history either; the SDK issues them again on
the next turn (an unmatched action is simply new to it).

Rules: the source must be finished; `event_id` must name a TaskScheduled event.
Children the prefix started and that were still open are started again under their
recorded instance ids (the shell decides what that means for an existing child).
"""

from __future__ import annotations

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.errors import RerunError
from sidecar.workflow.events import event_kind
from sidecar.workflow.finish import continued_execution_id
from sidecar.workflow.state import Metadata, OpenWork, WorkflowState

__all__ = ["rerun_from"]


def _target_index(source: WorkflowState, event_id: int) -> int:
    for index, event in enumerate(source.history):
        if event.eventId == event_id and event_kind(event) == "taskScheduled":
            return index
    raise RerunError(f"{source.instance_id!r} has no TaskScheduled event with id {event_id}")


def rerun_from(
    source: WorkflowState,
    event_id: int,
    new_instance_id: str,
    new_input: str | None,
    now_ms: int,
) -> WorkflowState:
    if not source.is_terminal:
        raise RerunError(f"{source.instance_id!r} has not finished: it cannot be rerun")
    if new_instance_id == source.instance_id:
        raise RerunError("a rerun needs a new instance id")
    target = _target_index(source, event_id)
    execution_id = continued_execution_id(new_instance_id, 1)
    history: list[pb.HistoryEvent] = []
    for event in source.history[: target + 1]:
        copy = pb.HistoryEvent()
        copy.CopyFrom(event)
        if event_kind(copy) == "executionStarted":
            copy.executionStarted.workflowInstance.instanceId = new_instance_id
            copy.executionStarted.workflowInstance.executionId.value = execution_id
        history.append(copy)
    scheduled = history[-1].taskScheduled
    scheduled.rerunParentInstanceInfo.instanceID = source.instance_id
    if new_input is not None:
        scheduled.input.value = new_input
    metadata = Metadata(
        name=source.metadata.name,
        execution_id=execution_id,
        created_ms=now_ms,
        updated_ms=now_ms,
        input=source.metadata.input,
    )
    return WorkflowState(
        instance_id=new_instance_id,
        history=tuple(history),
        metadata=metadata,
        open=OpenWork().after(history),
        started=any(event_kind(e) == "executionStarted" for e in history),
    )
