"""Engine tests from constructed histories: add_events, plan_turn, apply_response,
settle, continue-as-new, children, pending_work, rerun."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    Completed,
    DispatchActivity,
    NotifyParent,
    ParentInfo,
    RerunError,
    RunTurn,
    ScheduleStart,
    ScheduleTimer,
    StartChild,
    TerminateInstance,
    WorkflowError,
    WorkflowState,
    add_events,
    apply_response,
    child_instances,
    execution_started_event,
    new_state,
    pending_work,
    plan_turn,
    raised_event,
    rerun_from,
    resumed_event,
    scheduled_start,
    settle,
    start_at_ms,
    suspended_event,
    task_completed_event,
    task_failed_event,
    terminated_event,
    timer_fired_event,
)
from sidecar.workflow.errors import InvalidResponseError
from sidecar.workflow.events import (
    MIN_TIMESTAMP_SECONDS,
    OPTIONAL_TIMER_SECONDS,
    event_kind,
    failure_details,
)
from sidecar.workflow.testing import (
    complete_action,
    create_timer_action,
    response,
    schedule_task_action,
)

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


@settings(derandomize=True, max_examples=60)
@given(st.lists(st.sampled_from([1, 2, 3, 99]), min_size=1, max_size=12), st.integers(1, 4))
def test_completions_in_any_order_and_duplicated_count_once(order: list[int], cut: int) -> None:
    state = fanned_out()
    for chunk_start in range(0, len(order), cut):
        chunk = order[chunk_start : chunk_start + cut]
        state = add_events(state, [done(i) for i in chunk])
    ids = [e.taskCompleted.taskScheduledId for e in state.inbox]
    assert sorted(ids) == sorted(set(order) - {99})  # 99 was never scheduled
    if ids:
        state = turn(state)
        assert state.open.tasks.keys() == {1, 2, 3} - set(ids)
        # Once in the history, the same completions are still dropped.
        assert add_events(state, [done(i) for i in ids]) is state


def test_events_of_another_generation_or_execution_are_dropped() -> None:
    state = fanned_out()
    assert add_events(state, [done(1)], generation=2) is state
    assert add_events(state, [done(1)], execution_id="old") is state
    assert len(add_events(state, [done(1)], generation=1).inbox) == 1


def test_a_second_start_is_dropped() -> None:
    state = started()
    again = execution_started_event(
        name="flow", instance_id=ID, execution_id="e2", input=None, now_ms=T0
    )
    assert add_events(state, [again]) is state
    running = turn(state)
    assert add_events(running, [again]) is running


def test_failure_details_reach_the_app() -> None:
    state = fanned_out(1)
    failure = failure_details("ValueError", "bad", "trace")
    state = add_events(state, [task_failed_event(1, failure, T0 + 50)])
    planned = plan_turn(state, T0 + 60)
    assert planned is not None
    got = planned.request.newEvents[1].taskFailed
    assert got.taskScheduledId == 1 and got.failureDetails == failure


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


def test_events_raised_before_the_start_wait_for_it() -> None:
    state = add_events(new_state(ID), [raised_event("Go", "1", T0)])
    assert plan_turn(state, T0) is None
    state = add_events(
        state,
        [
            execution_started_event(
                name="f", instance_id=ID, execution_id="e", input=None, now_ms=T0
            )
        ],
    )
    planned = plan_turn(state, T0)
    assert planned is not None
    assert kinds(list(planned.request.newEvents)) == [
        "workflowStarted",
        "eventRaised",
        "executionStarted",
    ]
    assert planned.request.newEvents[1].eventRaised.name == "Go"  # kept as given


def test_suspend_holds_events_and_resume_releases_them() -> None:
    state = fanned_out(1)
    state = add_events(state, [suspended_event("pause", T0), suspended_event(None, T0)])
    assert state.status == pb.ORCHESTRATION_STATUS_SUSPENDED
    assert kinds(state.inbox) == ["executionSuspended"]  # the repeat was dropped
    state = add_events(state, [done(1), raised_event("e", None, T0)])
    assert plan_turn(state, T0 + 1) is None
    state = add_events(state, [resumed_event(None, T0), resumed_event(None, T0)])
    assert state.status == pb.ORCHESTRATION_STATUS_RUNNING
    planned = plan_turn(state, T0 + 2)
    assert planned is not None
    assert kinds(list(planned.request.newEvents)) == [
        "workflowStarted",
        "executionSuspended",
        "taskCompleted",
        "eventRaised",
        "executionResumed",
    ]


def test_a_suspend_and_a_resume_move_last_updated() -> None:
    """Each changes the status at once (not at the next turn): lastUpdatedAt with it.
    A repeat, which changes nothing, moves nothing."""
    state = fanned_out(1)
    before = state.metadata.updated_ms
    suspended = add_events(state, [suspended_event(None, before + 500)])
    assert suspended.metadata.updated_ms == before + 500
    again = add_events(suspended, [suspended_event(None, before + 900)])
    assert again.metadata.updated_ms == before + 500
    resumed = add_events(again, [resumed_event(None, before + 1_000)])
    assert resumed.metadata.updated_ms == before + 1_000
    late = add_events(state, [suspended_event(None, before - 5)])  # a skewed clock
    assert late.metadata.updated_ms == before


def test_events_before_a_suspend_are_still_delivered() -> None:
    state = fanned_out(1)
    state = add_events(state, [done(1), suspended_event(None, T0), raised_event("e", None, T0)])
    planned = plan_turn(state, T0 + 1)
    assert planned is not None
    assert kinds(list(planned.request.newEvents)) == ["workflowStarted", "taskCompleted"]
    after = apply_response(state, planned, response(ID), T0 + 1).state
    assert kinds(after.inbox) == ["executionSuspended", "eventRaised"]
    assert after.status == pb.ORCHESTRATION_STATUS_SUSPENDED
    assert plan_turn(after, T0 + 2) is None


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


def test_an_outcome_of_another_task_execution_is_dropped() -> None:
    state = started()
    action = schedule_task_action(1, "act", "1")
    action.scheduleTask.taskExecutionId = "te-new"
    state = turn(state, action)
    stale = task_completed_event(1, '"old"', T0 + 50, task_execution_id="te-old")
    assert add_events(state, [stale]) is state
    fresh = task_completed_event(1, '"new"', T0 + 60, task_execution_id="te-new")
    assert add_events(state, [fresh]).inbox[-1].taskCompleted.result.value == '"new"'
    untagged = task_completed_event(1, '"any"', T0 + 70)
    assert add_events(state, [untagged]) is not state  # no id to compare: accepted


def test_child_instances_lists_finished_children_too() -> None:
    """A recursive purge reaches every child ever created, not only the open ones."""
    state = with_children()
    finished = pb.HistoryEvent(childWorkflowInstanceCompleted={"taskScheduledId": 1})
    state = turn(add_events(state, [finished]))
    assert 1 not in state.open.children
    assert child_instances(state) == [("child-1", "b"), ("child-2", "b")]
    assert child_instances(started()) == []


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


def test_terminated_during_a_turn_discards_the_answer() -> None:
    state = fanned_out(1)
    state = add_events(state, [done(1)])
    planned = plan_turn(state, T0)
    assert planned is not None
    settled = settle(add_events(state, [terminated_event(None, T0)]), T0)
    assert settled is not None
    result = apply_response(settled.state, planned, response(ID, schedule_task_action(2, "x")), T0)
    assert result.state is settled.state and result.effects == ()


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


@settings(derandomize=True, max_examples=40)
@given(st.lists(st.lists(st.sampled_from([1, 2, 3, 4, 99]), max_size=4), max_size=6))
def test_cached_inbox_keys_decide_like_a_fresh_scan(batches: list[list[int]]) -> None:
    state = fanned_out(4)
    for batch in batches:
        cached = add_events(state, [done(i) for i in batch])
        # The older state used again (what a failed save leaves in place): its keys went
        # to `cached`, so it must not decide with them.
        again = add_events(state, [done(i) for i in batch])
        fresh = add_events(replace(state, inbox_keys_cache=None), [done(i) for i in batch])
        assert list(cached.inbox) == list(fresh.inbox)  # message equality: same events
        assert list(again.inbox) == list(fresh.inbox)
        state = cached


def test_cached_inbox_keys_are_not_reused_for_another_inbox() -> None:
    state = add_events(fanned_out(), [done(1)])
    assert state.inbox_keys_cache is not None
    # The same inbox contents under another tuple (what `replace` with a new inbox makes):
    # the cache does not apply, and a new copy without task 1 accepts task 1 again.
    emptied = replace(state, inbox=())
    again = add_events(emptied, [done(1)])
    assert [e.taskCompleted.taskScheduledId for e in again.inbox] == [1]
    # While the inbox is the cached one, a duplicate is still dropped.
    assert add_events(state, [done(1)]) is state


@settings(derandomize=True, max_examples=40)
@given(st.lists(st.sampled_from([1, 2, 3, 4, 99]), max_size=10), st.sampled_from([None, 1, 2]))
def test_events_added_together_decide_like_one_at_a_time(ids: list[int], gen: int | None) -> None:
    """The workflow actor folds the outcomes that arrived since the state was last read
    in one call: it must keep exactly what one call per event would keep."""
    state = fanned_out(4)
    together = add_events(state, [done(i) for i in ids], generation=gen)
    one_by_one = state
    for i in ids:
        one_by_one = add_events(one_by_one, [done(i)], generation=gen)
    assert list(together.inbox) == list(one_by_one.inbox)
    assert together.metadata == one_by_one.metadata
