"""`WorkflowState`: one workflow instance as the engine sees it.

A state is an immutable value. History and inbox are tuples of `HistoryEvent` messages;
INVARIANT: an event, once inside a state, is never mutated (callers' events are copied
on the way in, and every transformation builds new tuples), so states can be shared,
compared with `==` and kept as the "before" of a checkpoint. Events enter a state
through `sidecar.workflow.intake.add_events`.

Status (`WorkflowState.status`) is derived, as in Durable Task:
PENDING until the ExecutionStarted event has been given to the app; RUNNING after;
SUSPENDED while the last suspend/resume request seen (history or inbox) is a suspend;
STALLED after the app answered "version not available" (until the next turn);
CONTINUED_AS_NEW between a continue-as-new and the first turn of the new generation;
COMPLETED / FAILED / TERMINATED once finished (terminal: nothing is added any more).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.events import event_kind

__all__ = [
    "TERMINAL_STATUSES",
    "InboxKeys",
    "Metadata",
    "OpenWork",
    "ParentInfo",
    "RequestMark",
    "WorkflowState",
    "child_instances",
    "new_state",
]

TERMINAL_STATUSES = frozenset(
    {
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
    }
)


class RequestMark(NamedTuple):
    """A client's request an earlier generation took (`sidecar.workflow.copies`): its
    arrival stamp, kind and a digest of its body."""

    seconds: int
    nanos: int
    kind: str
    digest: bytes


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
    # Client requests the earlier generations took, whose events left with their
    # histories: a copy of one sent again is still known (`sidecar.workflow.copies`).
    earlier_requests: tuple[RequestMark, ...] = ()
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
