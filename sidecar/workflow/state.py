"""`WorkflowState`: one workflow instance as the engine sees it, and `add_events`.

A state is an immutable value. History and inbox are tuples of `HistoryEvent` messages;
INVARIANT: an event, once inside a state, is never mutated (callers' events are copied
on the way in, and every transformation builds new tuples), so states can be shared,
compared with `==` and kept as the "before" of a checkpoint.

Status (`WorkflowState.status`) is derived, as in Durable Task:
PENDING until the ExecutionStarted event has been given to the app; RUNNING after;
SUSPENDED while the last suspend/resume request seen (history or inbox) is a suspend;
STALLED after the app answered "version not available" (until the next turn);
CONTINUED_AS_NEW between a continue-as-new and the first turn of the new generation;
COMPLETED / FAILED / TERMINATED once finished (terminal: nothing is added any more).

`add_events` is idempotent, so redelivery is harmless (DESIGN 4.2). Dropped: anything
for a finished instance; anything tagged with another generation or execution id; a
TaskCompleted/TaskFailed for a task that is not open (never scheduled, already
completed, or whose completion already waits in the inbox); the same for TimerFired,
ChildWorkflowInstanceCompleted/Failed; a second ExecutionStarted or ExecutionTerminated;
a suspend while suspended and a resume while not suspended; an activity outcome whose
task execution id is not the scheduled task's (an earlier run of a purged and restarted
instance id). Two raises of one name are two events: an EventRaised is dropped only as
a copy of a client's request sent again (the same arrival stamp, name and data; see
`sidecar.engine.arrivals`), which a router does when the owner died before answering;
so is a copy of a suspend or resume, even when the state has flipped since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.errors import WorkflowError
from sidecar.workflow.events import event_kind, is_client_stamped, timestamp_ms

__all__ = [
    "TERMINAL_STATUSES",
    "Metadata",
    "OpenWork",
    "ParentInfo",
    "WorkflowState",
    "add_events",
    "child_instances",
    "holds_client_request",
    "new_state",
]

TERMINAL_STATUSES = frozenset(
    {
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
    }
)


@dataclass(frozen=True, slots=True)
class ParentInfo:
    """The parent of a child workflow: where its completion must be sent."""

    instance_id: str
    execution_id: str
    task_scheduled_id: int
    name: str = ""
    app_id: str = ""

    @classmethod
    def from_proto(cls, parent: pb.ParentInstanceInfo) -> ParentInfo:
        return cls(
            instance_id=parent.workflowInstance.instanceId,
            execution_id=parent.workflowInstance.executionId.value,
            task_scheduled_id=parent.taskScheduledId,
            name=parent.name.value,
            app_id=parent.appID,
        )

    def to_proto(self) -> pb.ParentInstanceInfo:
        info = pb.ParentInstanceInfo(taskScheduledId=self.task_scheduled_id, appID=self.app_id)
        info.name.value = self.name
        info.workflowInstance.instanceId = self.instance_id
        info.workflowInstance.executionId.value = self.execution_id
        return info


@dataclass(frozen=True, slots=True)
class Metadata:
    """What GetInstance reports besides status and custom status."""

    name: str = ""
    execution_id: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    completed_ms: int = 0
    input: str | None = None
    output: str | None = None
    failure: bytes | None = None  # a serialized TaskFailureDetails (lossless)
    parent: ParentInfo | None = None
    terminal_status: int | None = None  # one of TERMINAL_STATUSES once finished

    def failure_details(self) -> pb.TaskFailureDetails | None:
        if self.failure is None:
            return None
        return pb.TaskFailureDetails.FromString(self.failure)


@dataclass(frozen=True, slots=True)
class OpenWork:
    """Work scheduled in the history and not yet answered there, by action id.

    INVARIANT: the dicts are never mutated after construction (`after` copies).
    """

    tasks: Mapping[int, pb.HistoryEvent] = field(default_factory=dict)  # TaskScheduled
    timers: Mapping[int, pb.HistoryEvent] = field(default_factory=dict)  # TimerCreated
    children: Mapping[int, pb.HistoryEvent] = field(default_factory=dict)  # ChildCreated

    def after(self, events: Iterable[pb.HistoryEvent]) -> OpenWork:
        """The open work once `events` are appended to the history."""
        tasks, timers, children = dict(self.tasks), dict(self.timers), dict(self.children)
        for event in events:
            match event_kind(event):
                case "taskScheduled":
                    tasks[event.eventId] = event
                case "taskCompleted":
                    tasks.pop(event.taskCompleted.taskScheduledId, None)
                case "taskFailed":
                    tasks.pop(event.taskFailed.taskScheduledId, None)
                case "timerCreated":
                    timers[event.eventId] = event
                case "timerFired":
                    timers.pop(event.timerFired.timerId, None)
                case "childWorkflowInstanceCreated":
                    children[event.eventId] = event
                case "childWorkflowInstanceCompleted":
                    children.pop(event.childWorkflowInstanceCompleted.taskScheduledId, None)
                case "childWorkflowInstanceFailed":
                    children.pop(event.childWorkflowInstanceFailed.taskScheduledId, None)
        return OpenWork(tasks, timers, children)


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """One workflow instance: history (given to the app), inbox (not yet given).

    `generation` starts at 1 and grows by one per continue-as-new; activity actor ids,
    timer reminders and child completions carry it, so work of an older generation is
    recognised and dropped. `inbox_head` is the store sequence number of `inbox[0]`
    (inbox keys never shift: consumed keys are deleted, new ones appended).
    """

    instance_id: str
    generation: int = 1
    history: tuple[pb.HistoryEvent, ...] = ()
    inbox: tuple[pb.HistoryEvent, ...] = ()
    inbox_head: int = 0
    custom_status: str | None = None
    metadata: Metadata = Metadata()
    open: OpenWork = OpenWork()
    started: bool = False  # the ExecutionStarted event is in the history
    suspended: bool = False
    stalled: bool = False
    # Derived, not state: the dedup keys of `inbox` (see `InboxKeys`). Keeps `add_events`
    # from rescanning, or copying, a large inbox's keys for every completion of a fan-out.
    inbox_keys_cache: InboxKeys | None = field(default=None, compare=False, repr=False)

    @property
    def status(self) -> int:
        """The `OrchestrationStatus` GetInstance reports."""
        if self.metadata.terminal_status is not None:
            return self.metadata.terminal_status
        if self.stalled:
            return pb.ORCHESTRATION_STATUS_STALLED
        if self.suspended:
            return pb.ORCHESTRATION_STATUS_SUSPENDED
        if self.started:
            return pb.ORCHESTRATION_STATUS_RUNNING
        if self.generation > 1:
            return pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
        return pb.ORCHESTRATION_STATUS_PENDING

    @property
    def is_terminal(self) -> bool:
        return self.metadata.terminal_status is not None

    @property
    def exists(self) -> bool:
        """Whether anything was ever started here (a stored empty state does not count)."""
        return bool(self.history or self.inbox or self.is_terminal)


def new_state(instance_id: str, generation: int = 1) -> WorkflowState:
    """An empty instance. Re-creating a purged instance id should pass a generation above
    the old one, so that late work of the old run is not mistaken for the new one's."""
    return WorkflowState(instance_id=instance_id, generation=generation)


def child_instances(state: WorkflowState) -> list[tuple[str, str]]:
    """Every child workflow this execution created, as (instance id, target app id;
    "" = this app), in creation order: what a recursive purge must purge too."""
    return [
        (e.childWorkflowInstanceCreated.instanceId, e.router.targetAppID)
        for e in state.history
        if event_kind(e) == "childWorkflowInstanceCreated"
    ]


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


class InboxKeys:
    """The dedup keys of one inbox tuple, handed from state to state without a copy.

    Valid only while `inbox` *is* the state's inbox (a copy made by `replace` with a new
    inbox fails that check). `add_events` moves the set to the state it returns: it
    clears `inbox` here first, so the older state (still reachable, e.g. when a save
    failed) no longer matches and rescans its own inbox if it is used again. Only
    `add_events` touches the set."""

    __slots__ = ("inbox", "keys")

    def __init__(
        self, inbox: tuple[pb.HistoryEvent, ...] | None, keys: set[tuple[str, int]]
    ) -> None:
        self.inbox = inbox
        self.keys = keys

    def take(self, inbox: tuple[pb.HistoryEvent, ...]) -> set[tuple[str, int]] | None:
        """The set, if it describes `inbox`; it stops describing anything from now on."""
        if self.inbox is not inbox:
            return None
        self.inbox = None
        return self.keys


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


# Client requests the API stamps on arrival (`events.stamped`), so that a copy of one sent
# again is told from another request of the same kind.
_STAMPED_KINDS = ("eventRaised", "executionSuspended", "executionResumed")


def holds_client_request(state: WorkflowState, event: pb.HistoryEvent) -> bool:
    """Whether `event` is a client's stamped request (a raise, a suspend, a resume) that
    `state` already holds, in its history or its inbox: the same request sent again."""
    kind = event_kind(event)
    return (
        kind in _STAMPED_KINDS
        and is_client_stamped(event)
        and _holds_copy(_latest_first(state), event, kind)
    )


def _latest_first(state: WorkflowState) -> Iterable[pb.HistoryEvent]:
    return chain(reversed(state.inbox), reversed(state.history))


def _holds_copy(events: Iterable[pb.HistoryEvent], event: pb.HistoryEvent, kind: str) -> bool:
    """Whether `events` hold an event of `kind` with `event`'s arrival stamp and data."""
    seconds, nanos = event.timestamp.seconds, event.timestamp.nanos
    body = getattr(event, kind)
    for seen in events:
        stamp = seen.timestamp
        if (
            stamp.nanos == nanos
            and stamp.seconds == seconds
            and seen.HasField(kind)
            and getattr(seen, kind) == body
        ):
            return True
    return False


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
        """A stamped client request whose event is already here (in the history, the inbox
        or this call): a copy of the request sent again, not another one."""
        if not is_client_stamped(event):
            return False
        return _holds_copy(chain(reversed(self.accepted), _latest_first(self.state)), event, kind)

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
        if kind in _STAMPED_KINDS and self._sent_before(event, kind):
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
