"""Effects: what the engine asks its shell (the workflow and activity actors) to do.

The pure core returns effects; the shell carries them out after the checkpoint that
produced them has committed (an effect must never run for a state that was not saved).
Every effect is safe to repeat: receivers drop duplicates (`add_events`, the activity
actor keyed by instance, task id and generation), so `pending_work` may re-issue them
after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.state import ParentInfo, WorkflowState

__all__ = [
    "Completed",
    "DispatchActivity",
    "Effect",
    "NotifyParent",
    "NotifyWorkflow",
    "RunTurn",
    "ScheduleStart",
    "ScheduleTimer",
    "SendEvent",
    "StartChild",
    "TerminateInstance",
    "TurnResult",
    "activity_actor_id",
]


def activity_actor_id(instance_id: str, task_id: int, generation: int) -> str:
    """The activity actor's id: `{instance}::{task id}::{generation}` (Dapr's layout;
    the generation tells a retried-after-continue-as-new task from the old one)."""
    return f"{instance_id}::{task_id}::{generation}"


@dataclass(frozen=True, slots=True)
class DispatchActivity:
    """Start (or restart) activity `task_id` on its activity actor. A fan-out of N tasks
    yields N of these from one turn."""

    instance_id: str
    execution_id: str
    generation: int
    task_id: int
    name: str
    input: str | None
    task_execution_id: str = ""
    target_app_id: str = ""  # "" = this app; else the app id the router names
    version: str | None = None
    # Made by the turn that scheduled the task (not derived again on recovery): no
    # outcome can be saved for it yet, so the activity actor need not look for one.
    fresh: bool = False

    @property
    def actor_id(self) -> str:
        return activity_actor_id(self.instance_id, self.task_id, self.generation)

    def request(self) -> pb.ActivityRequest:
        """The work item the app receives for this activity."""
        req = pb.ActivityRequest(
            name=self.name, taskId=self.task_id, taskExecutionId=self.task_execution_id
        )
        req.workflowInstance.instanceId = self.instance_id
        req.workflowInstance.executionId.value = self.execution_id
        if self.input is not None:
            req.input.value = self.input
        if self.version is not None:
            req.version.value = self.version
        return req


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Arrange for `timer_fired_event(timer_id, fire_at_ms, ...)` to be added (with this
    generation) at `fire_at_ms` or later. Never issued for the SDK's optional timers."""

    instance_id: str
    generation: int
    timer_id: int
    fire_at_ms: int


@dataclass(frozen=True, slots=True)
class ScheduleStart:
    """Run the instance's first turn at `start_at_ms` or later: its start carries a
    scheduled start time (the SDK's `start_at`). Until then the start waits in the inbox
    and the instance is PENDING."""

    instance_id: str
    generation: int
    start_at_ms: int


@dataclass(frozen=True, slots=True)
class StartChild:
    """Add `event` (an ExecutionStarted) to the inbox of workflow `instance_id`, on app
    `target_app_id` ("" = this app). `parent` is None for a detached workflow."""

    instance_id: str
    name: str
    event: pb.HistoryEvent
    parent: ParentInfo | None
    target_app_id: str = ""


@dataclass(frozen=True, slots=True)
class SendEvent:
    """Add `event` (an EventRaised) to the inbox of workflow `instance_id`."""

    instance_id: str
    event: pb.HistoryEvent
    target_app_id: str = ""


@dataclass(frozen=True, slots=True)
class TerminateInstance:
    """Add `event` (an ExecutionTerminated, maybe recursive) to the inbox of workflow
    `instance_id`: a child of a recursively terminated workflow, or the app's
    terminateWorkflow action."""

    instance_id: str
    event: pb.HistoryEvent
    target_app_id: str = ""


@dataclass(frozen=True, slots=True)
class Completed:
    """The instance reached a terminal status (wake WaitForInstanceCompletion callers;
    retention/purge is the shell's policy)."""

    instance_id: str
    status: int
    output: str | None
    failure: pb.TaskFailureDetails | None


@dataclass(frozen=True, slots=True)
class NotifyParent:
    """Add `event` (ChildWorkflowInstanceCompleted/Failed) to the parent's inbox, with
    `add_events(..., execution_id=parent.execution_id)`."""

    parent: ParentInfo
    event: pb.HistoryEvent


@dataclass(frozen=True, slots=True)
class NotifyWorkflow:
    """From an activity actor: add `event` (TaskCompleted/TaskFailed) to the workflow's
    inbox with `add_events(..., generation=generation)`."""

    instance_id: str
    generation: int
    event: pb.HistoryEvent


@dataclass(frozen=True, slots=True)
class RunTurn:
    """The inbox holds events the app has not seen: run `plan_turn` (recovery)."""

    instance_id: str


Effect = (
    DispatchActivity
    | ScheduleTimer
    | ScheduleStart
    | StartChild
    | SendEvent
    | TerminateInstance
    | Completed
    | NotifyParent
    | NotifyWorkflow
    | RunTurn
)


@dataclass(frozen=True, slots=True)
class TurnResult:
    """The state after a turn (or a sidecar-side transition) and the effects to carry
    out once that state is saved, in order."""

    state: WorkflowState
    effects: tuple[Effect, ...] = ()
