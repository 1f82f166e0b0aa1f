"""Engine tests from constructed histories: how an instance ends. A failed workflow,
terminate (with and without its children, and during a turn), children that finish
and tell their parent, continue-as-new, and rerun from an activity."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    Completed,
    DispatchActivity,
    NotifyParent,
    ParentInfo,
    RerunError,
    RunTurn,
    TerminateInstance,
    WorkflowError,
    WorkflowState,
    add_events,
    apply_response,
    child_instances,
    pending_work,
    plan_turn,
    raised_event,
    rerun_from,
    settle,
    task_completed_event,
    terminated_event,
)
from sidecar.workflow.errors import InvalidResponseError
from sidecar.workflow.events import event_kind, failure_details
from sidecar.workflow.testing import complete_action, response, schedule_task_action

from .engine_helpers import ID, T0, done, fanned_out, kinds, started, turn


def test_workflow_failure_keeps_details() -> None:
    state = fanned_out(1)
    state = add_events(state, [done(1)])
    planned = plan_turn(state, T0 + 60)
    assert planned is not None
    failure = failure_details("TaskFailedError", "it broke")
    action = complete_action(2, pb.ORCHESTRATION_STATUS_FAILED, failure=failure)
    result = apply_response(state, planned, response(ID, action), T0 + 60)
    assert result.state.status == pb.ORCHESTRATION_STATUS_FAILED
    assert result.state.metadata.failure_details() == failure
    assert result.state.metadata.completed_ms == T0 + 60
    assert result.effects == (Completed(ID, pb.ORCHESTRATION_STATUS_FAILED, None, failure),)
    assert kinds(result.state.history)[-1] == "executionCompleted"
    # Terminal: nothing enters, nothing is planned.
    assert add_events(result.state, [raised_event("x", None, T0)]) is result.state
    assert plan_turn(result.state, T0 + 70) is None
    assert settle(result.state, T0 + 70) is None


def with_children() -> WorkflowState:
    state = started()
    actions = []
    for task_id in (1, 2):
        action = pb.WorkflowAction(id=task_id)
        action.createChildWorkflow.instanceId = f"child-{task_id}"
        action.createChildWorkflow.name = "kid"
        action.createChildWorkflow.input.value = str(task_id)
        action.router.targetAppID = "b"
        actions.append(action)
    return turn(state, *actions)


def test_terminate_needs_no_app_and_recurses_into_open_children() -> None:
    state = with_children()
    state = add_events(state, [task_completed_event(9, None, T0)])  # unknown task: dropped
    state = add_events(
        state, [pb.HistoryEvent(childWorkflowInstanceCompleted={"taskScheduledId": 2})]
    )
    state = add_events(state, [terminated_event('"bye"', T0 + 5, recurse=True)])
    with pytest.raises(WorkflowError):
        plan_turn(state, T0 + 6)
    result = settle(state, T0 + 6)
    assert result is not None
    assert result.state.status == pb.ORCHESTRATION_STATUS_TERMINATED
    assert result.state.metadata.output == '"bye"'
    assert kinds(result.state.history)[-2:] == ["executionTerminated", "executionCompleted"]
    assert result.state.inbox == ()
    completed, *children = result.effects
    assert completed == Completed(ID, pb.ORCHESTRATION_STATUS_TERMINATED, '"bye"', None)
    # child-2's completion was only in the inbox: both are still open in the history.
    assert [c.instance_id for c in children if isinstance(c, TerminateInstance)] == [
        "child-1",
        "child-2",
    ]
    assert all(
        isinstance(c, TerminateInstance) and c.event.executionTerminated.recurse for c in children
    )


def test_terminate_without_recurse_leaves_children() -> None:
    state = add_events(with_children(), [terminated_event(None, T0)])
    result = settle(state, T0)
    assert result is not None
    assert [type(e) for e in result.effects] == [Completed]


def test_child_instances_lists_finished_children_too() -> None:
    """A recursive purge reaches every child ever created, not only the open ones."""
    state = with_children()
    finished = pb.HistoryEvent(childWorkflowInstanceCompleted={"taskScheduledId": 1})
    state = turn(add_events(state, [finished]))
    assert 1 not in state.open.children
    assert child_instances(state) == [("child-1", "b"), ("child-2", "b")]
    assert child_instances(started()) == []


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (pb.ORCHESTRATION_STATUS_COMPLETED, "childWorkflowInstanceCompleted"),
        (pb.ORCHESTRATION_STATUS_FAILED, "childWorkflowInstanceFailed"),
        (pb.ORCHESTRATION_STATUS_TERMINATED, "childWorkflowInstanceFailed"),
    ],
)
def test_a_finished_child_notifies_its_parent(status: int, kind: str) -> None:
    parent = ParentInfo("p", "pe", 7, "parent", "a")
    state = started(parent)
    assert state.metadata.parent == parent
    failure = failure_details("E", "m") if status == pb.ORCHESTRATION_STATUS_FAILED else None
    planned = plan_turn(state, T0)
    assert planned is not None
    action = complete_action(1, status, result='"r"', failure=failure)
    result = apply_response(state, planned, response(ID, action), T0)
    notify = result.effects[-1]
    assert isinstance(notify, NotifyParent) and notify.parent == parent
    assert event_kind(notify.event) == kind
    assert pending_work(result.state) == [notify]  # re-sent on reactivation


def test_continue_as_new_resets_history_and_bumps_generation() -> None:
    state = fanned_out(2)
    state = add_events(state, [done(1)])
    planned = plan_turn(state, T0 + 20)
    assert planned is not None
    # Arrive while the app runs: a completion (old generation) and a raised event.
    state = add_events(state, [done(2), raised_event("late", "2", T0 + 21)])
    action = complete_action(3, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, result='"next"')
    action.completeWorkflow.carryoverEvents.append(raised_event("kept", "1", T0))
    result = apply_response(state, planned, response(ID, action), T0 + 22)
    new = result.state
    assert new.generation == 2 and new.history == ()
    assert new.status == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
    assert kinds(new.inbox) == ["executionStarted", "eventRaised", "eventRaised"]
    assert new.inbox[0].executionStarted.input.value == '"next"'
    assert [e.eventRaised.name for e in new.inbox[1:]] == ["kept", "late"]
    assert new.metadata.input == '"next"' and new.metadata.execution_id == "wf@2"
    assert new.inbox_head == state.inbox_head + len(state.inbox)
    assert add_events(new, [done(2)], generation=1) is new
    assert pending_work(new) == [RunTurn(ID)]
    running = turn(new)
    assert running.status == pb.ORCHESTRATION_STATUS_RUNNING


def _carrying(event: pb.HistoryEvent) -> pb.WorkflowAction:
    action = complete_action(1, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, result='"next"')
    action.completeWorkflow.carryoverEvents.append(event)
    return action


def test_continue_as_new_carries_over_raised_events_only() -> None:
    """Anything else would enter the next generation unasked: a timer or a task it never
    scheduled (its recovery would arm or dispatch it), a second start."""
    state = started()
    planned = plan_turn(state, T0 + 1)
    assert planned is not None
    timer = pb.HistoryEvent(eventId=5)
    timer.timerCreated.fireAt.seconds = -(2**40)  # no Timestamp conversion takes it
    task = pb.HistoryEvent(eventId=6, taskScheduled={"name": "never"})
    for wrong in (timer, task, started().inbox[0], pb.HistoryEvent()):
        with pytest.raises(InvalidResponseError, match="only raised events are carried over"):
            apply_response(state, planned, response(ID, _carrying(wrong)), T0 + 2)
    late = raised_event("e", None, T0)
    late.timestamp.seconds = 2**40
    with pytest.raises(InvalidResponseError, match="timestamp has seconds"):
        apply_response(state, planned, response(ID, _carrying(late)), T0 + 2)
    ok = apply_response(state, planned, response(ID, _carrying(raised_event("e", None, 0))), 9)
    assert kinds(ok.state.inbox) == ["executionStarted", "eventRaised"]


def test_terminated_during_a_turn_discards_the_answer() -> None:
    state = fanned_out(1)
    state = add_events(state, [done(1)])
    planned = plan_turn(state, T0)
    assert planned is not None
    settled = settle(add_events(state, [terminated_event(None, T0)]), T0)
    assert settled is not None
    result = apply_response(settled.state, planned, response(ID, schedule_task_action(2, "x")), T0)
    assert result.state is settled.state and result.effects == ()


def finished_fan_out() -> WorkflowState:
    state = fanned_out(3)
    state = turn(add_events(state, [done(1), done(2), done(3)]), complete_action(4, 1, '"x"'))
    assert state.is_terminal
    return state


def test_rerun_from_an_activity() -> None:
    source = finished_fan_out()
    rerun = rerun_from(source, 2, "wf-rerun", '"new"', T0 + 99)
    assert rerun.instance_id == "wf-rerun"
    assert kinds(rerun.history) == ["workflowStarted", "executionStarted"] + ["taskScheduled"] * 2
    assert rerun.history[-1].taskScheduled.input.value == '"new"'
    assert rerun.history[-1].taskScheduled.rerunParentInstanceInfo.instanceID == ID
    started_event = rerun.history[1].executionStarted
    assert started_event.workflowInstance.instanceId == "wf-rerun"
    assert rerun.status == pb.ORCHESTRATION_STATUS_RUNNING
    work = pending_work(rerun)
    assert [(w.task_id, w.input) for w in work if isinstance(w, DispatchActivity)] == [
        (1, "1"),
        (2, '"new"'),
    ]
    assert source.history[3].taskScheduled.input.value == "2"  # the source is untouched


def test_rerun_rules() -> None:
    source = finished_fan_out()
    with pytest.raises(RerunError):
        rerun_from(fanned_out(), 1, "n", None, T0)
    with pytest.raises(RerunError):
        rerun_from(source, 42, "n", None, T0)
    with pytest.raises(RerunError):
        rerun_from(source, 1, ID, None, T0)
    assert replace(source).is_terminal
