"""Helpers shared by the engine tests (test_engine_*.py): a started instance, one
turn with the given actions, a fan-out of tasks and their completions."""

from __future__ import annotations

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    ParentInfo,
    WorkflowState,
    add_events,
    apply_response,
    execution_started_event,
    new_state,
    plan_turn,
    task_completed_event,
)
from sidecar.workflow.events import event_kind
from sidecar.workflow.testing import response, schedule_task_action

T0 = 1_700_000_000_000
ID = "wf"


def kinds(events: tuple[pb.HistoryEvent, ...] | list[pb.HistoryEvent]) -> list[str]:
    return [event_kind(e) for e in events]


def started(parent: ParentInfo | None = None) -> WorkflowState:
    event = execution_started_event(
        name="flow",
        instance_id=ID,
        execution_id="e1",
        input='"in"',
        now_ms=T0,
        parent=parent.to_proto() if parent else None,
    )
    return add_events(new_state(ID), [event])


def turn(state: WorkflowState, *actions: pb.WorkflowAction, now: int = T0 + 10) -> WorkflowState:
    planned = plan_turn(state, now)
    assert planned is not None
    return apply_response(state, planned, response(ID, *actions), now).state


def fanned_out(n: int = 3) -> WorkflowState:
    state = started()
    return turn(state, *[schedule_task_action(i, "act", str(i)) for i in range(1, n + 1)])


def done(task_id: int, result: str = "1") -> pb.HistoryEvent:
    return task_completed_event(task_id, result, T0 + 100)
