"""Engine tests from constructed histories: starting and turns. A start given to the
app, a scheduled start, plan_turn and apply_response with the SDK's actions (tasks,
timers, children, custom status, a stalled version), answers that are refused, and
pending_work derived from the state."""

from __future__ import annotations

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    DispatchActivity,
    ParentInfo,
    RunTurn,
    ScheduleStart,
    ScheduleTimer,
    StartChild,
    WorkflowError,
    WorkflowState,
    add_events,
    apply_response,
    execution_started_event,
    new_state,
    pending_work,
    plan_turn,
    raised_event,
    scheduled_start,
    settle,
    start_at_ms,
    task_failed_event,
    terminated_event,
    timer_fired_event,
)
from sidecar.workflow.errors import InvalidResponseError
from sidecar.workflow.events import MIN_TIMESTAMP_SECONDS, OPTIONAL_TIMER_SECONDS, failure_details
from sidecar.workflow.testing import create_timer_action, response, schedule_task_action

from .engine_helpers import ID, T0, done, fanned_out, kinds, started, turn


def test_pending_until_the_start_is_given_to_the_app() -> None:
    state = started()
    assert state.status == pb.ORCHESTRATION_STATUS_PENDING
    assert state.metadata.name == "flow" and state.metadata.input == '"in"'
    planned = plan_turn(state, T0 + 5)
    assert planned is not None
    assert kinds(list(planned.request.newEvents)) == ["workflowStarted", "executionStarted"]
    assert planned.request.newEvents[0].timestamp.ToMilliseconds() == T0 + 5
    assert list(planned.request.pastEvents) == []


def scheduled(start_at: int) -> WorkflowState:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="e1", input=None, now_ms=T0
    )
    event.executionStarted.scheduledStartTimestamp.FromMilliseconds(start_at)
    return add_events(new_state(ID), [event])


def test_a_scheduled_start_runs_nothing_before_its_time() -> None:
    at = T0 + 60_000
    state = scheduled(at)
    assert start_at_ms(state) == at
    assert state.status == pb.ORCHESTRATION_STATUS_PENDING
    assert plan_turn(state, at - 1) is None
    assert scheduled_start(state, at - 1) == ScheduleStart(ID, 1, at)
    # An event raised meanwhile waits with the start.
    state = add_events(state, [raised_event("go", '"x"', T0 + 5)])
    assert plan_turn(state, at - 1) is None
    planned = plan_turn(state, at)
    assert planned is not None
    assert kinds(list(planned.request.newEvents)) == [
        "workflowStarted", "executionStarted", "eventRaised",
    ]  # fmt: skip
    assert planned.request.newEvents[0].timestamp.ToMilliseconds() == at
    assert scheduled_start(state, at) is None  # due: nothing to wake
    # Recovery arms it again, due or not; once the start has run, nothing.
    assert ScheduleStart(ID, 1, at) in pending_work(state)
    ran = apply_response(state, planned, response(ID), at).state
    assert ran.status == pb.ORCHESTRATION_STATUS_RUNNING
    assert start_at_ms(ran) is None and scheduled_start(ran, T0) is None
    assert not any(isinstance(e, ScheduleStart) for e in pending_work(ran))
    # A start without a scheduled time has no wake-up.
    assert start_at_ms(started()) is None and scheduled_start(started(), T0) is None


def test_a_scheduled_start_can_be_terminated_before_its_time() -> None:
    at = T0 + 60_000
    state = add_events(scheduled(at), [terminated_event('"early"', T0 + 5)])
    result = settle(state, T0 + 6)
    assert result is not None
    assert result.state.status == pb.ORCHESTRATION_STATUS_TERMINATED
    assert result.state.metadata.output == '"early"'
    assert start_at_ms(result.state) is None and pending_work(result.state) == []


def test_fan_out_is_one_turn_with_one_dispatch_per_task() -> None:
    state = started()
    planned = plan_turn(state, T0 + 10)
    assert planned is not None
    actions = [schedule_task_action(i, "act", str(i), target_app="other") for i in (1, 2, 3)]
    result = apply_response(state, planned, response(ID, *actions), T0 + 10)
    new = result.state
    assert new.status == pb.ORCHESTRATION_STATUS_RUNNING
    assert kinds(new.history) == ["workflowStarted", "executionStarted"] + ["taskScheduled"] * 3
    assert [e.eventId for e in new.history[2:]] == [1, 2, 3]
    dispatches = [e for e in result.effects if isinstance(e, DispatchActivity)]
    assert [(d.task_id, d.input, d.target_app_id, d.generation) for d in dispatches] == [
        (1, "1", "other", 1),
        (2, "2", "other", 1),
        (3, "3", "other", 1),
    ]
    assert dispatches[0].actor_id == "wf::1::1"
    assert all(d.fresh for d in dispatches)  # from this turn: nothing saved to look up
    assert dispatches[0].request().workflowInstance.executionId.value == "e1"
    assert new.inbox == () and new.inbox_head == 1


def test_the_history_travels_beside_the_request() -> None:
    state = add_events(fanned_out(), [done(2)])
    planned = plan_turn(state, T0 + 50)
    assert planned is not None
    assert planned.past is state.history  # shared, not copied
    assert list(planned.request.pastEvents) == []
    full = planned.full_request()
    assert list(full.pastEvents) == list(state.history)
    assert list(full.newEvents) == list(planned.request.newEvents)
    assert full.instanceId == ID and full.executionId.value == "e1"


def test_failure_details_reach_the_app() -> None:
    state = fanned_out(1)
    failure = failure_details("ValueError", "bad", "trace")
    state = add_events(state, [task_failed_event(1, failure, T0 + 50)])
    planned = plan_turn(state, T0 + 60)
    assert planned is not None
    got = planned.request.newEvents[1].taskFailed
    assert got.taskScheduledId == 1 and got.failureDetails == failure


def test_timers_schedule_and_fire_once() -> None:
    state = started()
    optional = create_timer_action(2, 0)
    optional.createTimer.fireAt.seconds = OPTIONAL_TIMER_SECONDS
    optional.createTimer.fireAt.nanos = 999_999_999
    planned = plan_turn(state, T0)
    assert planned is not None
    actions = (create_timer_action(1, T0 + 5000), optional)
    result = apply_response(state, planned, response(ID, *actions), T0)
    assert result.effects == (ScheduleTimer(ID, 1, 1, T0 + 5000),)
    state = result.state
    assert kinds(state.history)[-2:] == ["timerCreated", "timerCreated"]
    fired = timer_fired_event(1, T0 + 5000, T0 + 5001)
    state = add_events(state, [fired, fired], generation=1)
    assert kinds(state.inbox) == ["timerFired"]
    state = turn(state)
    assert add_events(state, [fired], generation=1) is state
    assert 1 not in state.open.timers and 2 in state.open.timers


def test_the_workflow_never_sees_its_timer_fire_before_it_was_due() -> None:
    """The SDK's timers carry microseconds (its clock plus a timedelta): one due 1733.757
    ms after the turn is armed for the next whole millisecond, and the turn that
    delivers it is stamped no earlier than that, even if the reminder fired by a clock
    ahead of this one (found by a chaos run: a 1.7337 s timer read 1.733 s)."""
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    action = create_timer_action(1, 0)
    action.createTimer.fireAt.seconds, action.createTimer.fireAt.nanos = T0 // 1000 + 1, 733_757_338
    result = apply_response(state, planned, response(ID, action), T0)
    assert result.effects == (ScheduleTimer(ID, 1, 1, T0 + 1734),)
    assert pending_work(result.state) == [ScheduleTimer(ID, 1, 1, T0 + 1734)]
    fired = add_events(result.state, [timer_fired_event(1, T0 + 1734, T0 + 1700)], generation=1)
    for now, stamp in ((T0 + 1700, T0 + 1734), (T0 + 1800, T0 + 1800)):
        nxt = plan_turn(fired, now)
        assert nxt is not None and nxt.request.newEvents[0].timestamp.ToMilliseconds() == stamp


def test_a_start_scheduled_between_two_milliseconds_waits_for_the_later() -> None:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="e1", input=None, now_ms=T0
    )
    at = event.executionStarted.scheduledStartTimestamp
    at.seconds, at.nanos = T0 // 1000, 500_000  # T0 + 0.5 ms
    state = add_events(new_state(ID), [event])
    assert start_at_ms(state) == T0 + 1
    assert plan_turn(state, T0) is None and plan_turn(state, T0 + 1) is not None


@pytest.mark.parametrize(
    ("seconds", "nanos", "valid"),
    [
        (MIN_TIMESTAMP_SECONDS - 1, 0, False),  # before year 1: no conversion takes it
        (0, -1, False),
        (0, 1_000_000_000, False),
        (MIN_TIMESTAMP_SECONDS, 0, True),
        (OPTIONAL_TIMER_SECONDS + 10**9, 0, True),  # past 9999: a timer that never fires
    ],
)
def test_a_timer_no_timestamp_conversion_takes_fails_the_answer(
    seconds: int, nanos: int, valid: bool
) -> None:
    """Before, the app's timer at year -32000 was taken; firing it raised in the pure
    core on every attempt (the fired event's timestamp cannot be built)."""
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    action = create_timer_action(1, 0)
    action.createTimer.fireAt.seconds, action.createTimer.fireAt.nanos = seconds, nanos
    if valid:
        apply_response(state, planned, response(ID, action), T0)
        return
    with pytest.raises(InvalidResponseError, match="createTimer 1: fireAt has"):
        apply_response(state, planned, response(ID, action), T0)


def test_children_are_started_with_parent_info() -> None:
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    action = pb.WorkflowAction(id=1)
    action.createChildWorkflow.instanceId = "kid-1"
    action.createChildWorkflow.name = "kid"
    result = apply_response(state, planned, response(ID, action), T0)
    (start,) = result.effects
    assert isinstance(start, StartChild)
    assert start.parent == ParentInfo(ID, "e1", 1, "flow", "")
    child_started = start.event.executionStarted
    assert child_started.workflowInstance.instanceId == "kid-1"
    assert child_started.parentInstance.taskScheduledId == 1


@pytest.mark.parametrize("source", ["", "app"])
def test_actions_from_the_workflows_own_app_are_taken(source: str) -> None:
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    action = schedule_task_action(1, "act")
    action.router.sourceAppID = source
    action.router.targetAppID = "billing"
    result = apply_response(state, planned, response(ID, action), T0, own_app="app")
    (dispatch,) = result.effects
    assert isinstance(dispatch, DispatchActivity) and dispatch.target_app_id == "billing"


def test_an_action_naming_another_source_app_is_refused() -> None:
    """The source app is where the outcome goes back to (a child's completion, say):
    another app's would never reach this workflow, which would wait for ever."""
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    action = pb.WorkflowAction(id=1)
    action.createChildWorkflow.instanceId = "kid-1"
    action.router.sourceAppID = "null"
    with pytest.raises(InvalidResponseError, match="sourceAppID 'null' is not this workflow's app"):
        apply_response(state, planned, response(ID, action), T0, own_app="app")
    # Without `own_app`, not checked (the core alone does not know its app).
    assert apply_response(state, planned, response(ID, action), T0).effects


def test_events_added_during_a_turn_stay_in_the_inbox() -> None:
    state = fanned_out(2)
    state = add_events(state, [done(1)])
    planned = plan_turn(state, T0)
    assert planned is not None
    state = add_events(state, [done(2)])
    after = apply_response(state, planned, response(ID), T0).state
    assert [e.taskCompleted.taskScheduledId for e in after.inbox] == [2]
    with pytest.raises(InvalidResponseError):
        apply_response(after, planned, response(ID), T0)  # stale: applied already
    with pytest.raises(InvalidResponseError):
        apply_response(state, planned, response("other"), T0)


def test_pending_work_is_derived_from_the_state() -> None:
    state = fanned_out(3)
    state = turn(add_events(state, [done(2)]), create_timer_action(4, T0 + 9000))
    work = pending_work(state)
    assert [e.task_id for e in work if isinstance(e, DispatchActivity)] == [1, 3]
    # Derived again from stored state: an outcome may be saved, so they are not fresh.
    assert not any(e.fresh for e in work if isinstance(e, DispatchActivity))
    assert [e.timer_id for e in work if isinstance(e, ScheduleTimer)] == [4]
    assert not any(isinstance(e, RunTurn) for e in work)
    assert RunTurn(ID) in pending_work(add_events(state, [done(1)]))


def test_custom_status_follows_the_latest_turn() -> None:
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    after = apply_response(state, planned, response(ID, custom_status="step 1"), T0).state
    assert after.custom_status == "step 1"


def test_unknown_actions_and_inbox_kinds_are_refused() -> None:
    state = started()
    planned = plan_turn(state, T0)
    assert planned is not None
    with pytest.raises(InvalidResponseError):
        apply_response(state, planned, response(ID, pb.WorkflowAction(id=1)), T0)
    scheduled = pb.HistoryEvent(taskScheduled={"name": "x"})
    with pytest.raises(WorkflowError):
        add_events(state, [scheduled])


def test_version_not_available_stalls_until_the_next_turn() -> None:
    state = started()
    action = pb.WorkflowAction(id=1)
    action.workflowVersionNotAvailable.SetInParent()
    stalled = turn(state, action)
    assert stalled.status == pb.ORCHESTRATION_STATUS_STALLED
    resumed = turn(add_events(stalled, [raised_event("x", None, T0)]))
    assert resumed.status == pb.ORCHESTRATION_STATUS_RUNNING
