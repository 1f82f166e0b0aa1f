"""`add_events`: how events enter a workflow's inbox, and which are dropped.

`add_events` is idempotent, so redelivery is harmless (DESIGN 4.2). Dropped: anything
for a finished instance; anything tagged with another generation or execution id; a
TaskCompleted/TaskFailed for a task that is not open (never scheduled, already
completed, or whose completion already waits in the inbox); the same for TimerFired,
ChildWorkflowInstanceCompleted/Failed; a second ExecutionStarted or ExecutionTerminated;
a suspend while suspended and a resume while not suspended; an activity outcome whose
task execution id is not the scheduled task's (an earlier run of a purged and restarted
instance id). Two raises of one name are two events: an EventRaised is dropped only as
a copy of a client's request sent again (the same arrival stamp, name and data, in
this instance's inbox, history or earlier generations; see `sidecar.workflow.copies`),
which a router does when the owner died before answering; so is a copy of a suspend or
resume, even when the state has flipped since.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.copies import STAMPED_KINDS, holds_copy
from sidecar.workflow.errors import WorkflowError
from sidecar.workflow.events import event_kind, is_client_stamped, timestamp_ms
from sidecar.workflow.state import InboxKeys, Metadata, ParentInfo, WorkflowState

__all__ = ["add_events", "inbox_kind"]


def _answered_id(event: pb.HistoryEvent, kind: str) -> tuple[str, int] | None:
    """For an event answering a scheduled action: (family, action id)."""
    match kind:
        case "taskCompleted":
            return "task", event.taskCompleted.taskScheduledId
        case "taskFailed":
            return "task", event.taskFailed.taskScheduledId
        case "timerFired":
            return "timer", event.timerFired.timerId
        case "childWorkflowInstanceCompleted":
            return "child", event.childWorkflowInstanceCompleted.taskScheduledId
        case "childWorkflowInstanceFailed":
            return "child", event.childWorkflowInstanceFailed.taskScheduledId
    return None


_SINGLETONS = ("executionStarted", "executionTerminated")
_ACCEPTED = frozenset(
    {
        "executionStarted",
        "executionTerminated",
        "executionSuspended",
        "executionResumed",
        "eventRaised",
        "taskCompleted",
        "taskFailed",
        "timerFired",
        "childWorkflowInstanceCompleted",
        "childWorkflowInstanceFailed",
    }
)


def inbox_kind(event: pb.HistoryEvent) -> str:
    """The event's kind; WorkflowError if no event of that kind may enter an inbox."""
    kind = event_kind(event)
    if kind not in _ACCEPTED:
        raise WorkflowError(f"a {kind or 'empty'} event cannot enter an inbox")
    return kind


def _inbox_keys(inbox: Iterable[pb.HistoryEvent]) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    for event in inbox:
        kind = event_kind(event)
        answered = _answered_id(event, kind)
        if answered is not None:
            keys.add(answered)
        elif kind in _SINGLETONS:
            keys.add((kind, 0))
    return keys


def _is_open(state: WorkflowState, family: str, action_id: int) -> bool:
    if family == "task":
        return action_id in state.open.tasks
    if family == "timer":
        return action_id in state.open.timers
    return action_id in state.open.children


def _same_task_execution(state: WorkflowState, event: pb.HistoryEvent, kind: str) -> bool:
    """False for an activity outcome of another scheduling of the same task id (an
    earlier run of a purged and restarted instance id): task execution ids differ."""
    if kind == "taskCompleted":
        task_id, execution = (
            event.taskCompleted.taskScheduledId,
            event.taskCompleted.taskExecutionId,
        )
    elif kind == "taskFailed":
        task_id, execution = event.taskFailed.taskScheduledId, event.taskFailed.taskExecutionId
    else:
        return True
    scheduled = state.open.tasks[task_id].taskScheduled.taskExecutionId
    return not (execution and scheduled and execution != scheduled)


@dataclass(slots=True)
class _Intake:
    """The bookkeeping of one `add_events` call."""

    state: WorkflowState
    keys: set[tuple[str, int]]
    metadata: Metadata
    suspended: bool
    accepted: list[pb.HistoryEvent] = field(default_factory=list)

    def offer(self, event: pb.HistoryEvent) -> None:
        kind = inbox_kind(event)
        if self._admit(event, kind):
            copy = pb.HistoryEvent()
            copy.CopyFrom(event)
            self.accepted.append(copy)

    def _sent_before(self, event: pb.HistoryEvent, kind: str) -> bool:
        """A stamped client request whose event is already here (in this call, the inbox,
        the history or the marks of earlier generations): a copy of the request sent
        again, not another one."""
        if not is_client_stamped(event):
            return False
        return holds_copy(self.state, event, kind, also=reversed(self.accepted))

    def _admit(self, event: pb.HistoryEvent, kind: str) -> bool:
        answered = _answered_id(event, kind)
        if answered is not None:
            if (
                answered in self.keys
                or not _is_open(self.state, *answered)
                or not _same_task_execution(self.state, event, kind)
            ):
                return False
            self.keys.add(answered)
            return True
        if kind in _SINGLETONS:
            return self._first_of_its_kind(event, kind)
        if kind in STAMPED_KINDS and self._sent_before(event, kind):
            return False
        if kind in ("executionSuspended", "executionResumed"):
            return self._toggle(event, suspend=kind == "executionSuspended")
        return True

    def _first_of_its_kind(self, event: pb.HistoryEvent, kind: str) -> bool:
        """A start or a termination: taken when none is here yet."""
        if (kind, 0) in self.keys or (kind == "executionStarted" and self.state.started):
            return False
        self.keys.add((kind, 0))
        if kind == "executionStarted":
            self.metadata = _started_metadata(self.metadata, event)
        return True

    def _toggle(self, event: pb.HistoryEvent, *, suspend: bool) -> bool:
        """A suspend or resume: taken when it changes something."""
        if suspend == self.suspended:
            return False
        self.suspended = suspend
        # The status changes now (SUSPENDED / RUNNING), not at the next turn.
        at = max(self.metadata.updated_ms, timestamp_ms(event.timestamp))
        self.metadata = replace(self.metadata, updated_ms=at)
        return True


def add_events(
    state: WorkflowState,
    events: Iterable[pb.HistoryEvent],
    *,
    generation: int | None = None,
    execution_id: str | None = None,
) -> WorkflowState:
    """Append the events that are new to the inbox; drop duplicates (see module doc).

    `generation` (activity completions, timers) or `execution_id` (child completions)
    name the execution the events belong to; events for another one are dropped.
    Client requests (start, raise, suspend, resume, terminate) pass neither.
    """
    if state.is_terminal:
        return state
    if generation is not None and generation != state.generation:
        return state
    if execution_id is not None and execution_id != state.metadata.execution_id:
        return state
    cached = state.inbox_keys_cache
    keys = cached.take(state.inbox) if cached is not None else None
    if keys is None:
        keys = _inbox_keys(state.inbox)
        cached = None  # nothing to give back
    intake = _Intake(state, keys, state.metadata, state.suspended)
    try:
        for event in events:
            intake.offer(event)
    finally:
        if cached is not None and not intake.accepted:
            cached.inbox = state.inbox  # the set is untouched: it still describes this inbox
    if not intake.accepted:
        return state
    inbox = state.inbox + tuple(intake.accepted)
    return replace(
        state,
        inbox=inbox,
        metadata=intake.metadata,
        suspended=intake.suspended,
        inbox_keys_cache=InboxKeys(inbox, intake.keys),  # intake is done with its set
    )


def _started_metadata(metadata: Metadata, event: pb.HistoryEvent) -> Metadata:
    started = event.executionStarted
    parent = None
    if started.HasField("parentInstance"):
        parent = ParentInfo.from_proto(started.parentInstance)
    created = timestamp_ms(event.timestamp)
    return replace(
        metadata,
        name=started.name,
        execution_id=started.workflowInstance.executionId.value,
        input=started.input.value if started.HasField("input") else None,
        parent=parent,
        created_ms=created,
        updated_ms=max(metadata.updated_ms, created),
    )
