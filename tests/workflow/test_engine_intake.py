"""Engine tests from constructed histories: what add_events lets into the inbox.
Duplicates and outcomes of another generation, execution or task execution are
dropped; events wait for the start; suspend holds events and resume releases them;
the cached inbox keys decide like a fresh scan."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    add_events,
    apply_response,
    execution_started_event,
    new_state,
    plan_turn,
    raised_event,
    resumed_event,
    suspended_event,
    task_completed_event,
)
from sidecar.workflow.testing import response, schedule_task_action

from .engine_helpers import ID, T0, done, fanned_out, kinds, started, turn


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
