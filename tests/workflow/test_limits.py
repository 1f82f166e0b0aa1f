"""Payloads against the store's limits (`sidecar.workflow.limits`): the limit itself,
an activity result over it, a turn no checkpoint can hold, a child start refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import StoreLimits
from sidecar.workflow import (
    CHILD_REFUSED_ERROR_TYPE,
    PAYLOAD_ERROR_TYPE,
    CheckpointTooLargeError,
    Completed,
    NotifyParent,
    ParentInfo,
    StartChild,
    StoredLayout,
    WorkflowState,
    add_events,
    apply_response,
    child_not_started,
    execution_started_event,
    fit_activity_response,
    layout_of,
    new_state,
    payload_limit,
    plan_checkpoint,
    plan_turn,
    unsaveable,
)
from sidecar.workflow.limits import RESERVE_BYTES
from sidecar.workflow.testing import complete_action, response

T0 = 1_700_000_000_000
ID = "wf"
WF_TYPE = "dapr.internal.default.app.workflow"


def _started(input: str, parent: ParentInfo | None = None) -> WorkflowState:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="e1", input=input, now_ms=T0,
        parent=parent.to_proto() if parent else None,
    )  # fmt: skip
    return add_events(new_state(ID), [event])


def _activity_response(result: str | None) -> pb.ActivityResponse:
    res = pb.ActivityResponse(instanceId=ID, taskId=3, completionToken="t9")
    if result is not None:
        res.result.value = result
    return res


def test_the_limit_leaves_room_for_an_input_twice_and_the_reserve() -> None:
    etcd = StoreLimits(10_000, 1_572_864 - 65_536)
    limit = payload_limit(etcd)
    assert 2 * limit + RESERVE_BYTES <= etcd.max_bytes
    assert limit > 700_000
    # A tiny store still gets a positive limit.
    assert payload_limit(StoreLimits(10, 4096)) == 1024


@given(st.integers(min_value=1, max_value=1 << 40))
def test_the_limit_is_positive_and_below_half_the_transaction(max_bytes: int) -> None:
    limit = payload_limit(StoreLimits(100, max_bytes))
    assert 0 <= limit <= max_bytes // 2
    assert limit > 0 or max_bytes < 4


def test_a_result_within_the_limit_is_kept_as_it_is() -> None:
    res = _activity_response("x" * 100)
    assert fit_activity_response(res, 100 + 2) is res
    empty = _activity_response(None)
    assert fit_activity_response(empty, 1) is empty


def test_a_result_over_the_limit_becomes_a_failure_that_is_not_retried() -> None:
    res = _activity_response("é" * 60)  # 120 bytes in UTF-8, 60 characters
    failed = fit_activity_response(res, 100)
    assert not failed.HasField("result")
    assert failed.failureDetails.errorType == PAYLOAD_ERROR_TYPE
    assert failed.failureDetails.isNonRetriable
    assert "120 bytes" in failed.failureDetails.errorMessage
    assert "100 bytes" in failed.failureDetails.errorMessage
    assert (failed.instanceId, failed.taskId, failed.completionToken) == (ID, 3, "t9")
    assert fit_activity_response(res, 120) is res


def test_a_turn_no_checkpoint_can_hold_fails_from_the_saved_state() -> None:
    limits = StoreLimits(100, 20_000)
    state = _started('"in"')
    saved = plan_checkpoint(StoredLayout(), state, "app", WF_TYPE, limits)
    turn = plan_turn(state, T0 + 1)
    assert turn is not None
    big = complete_action(1, pb.ORCHESTRATION_STATUS_COMPLETED, '"' + "z" * 30_000 + '"')
    result = apply_response(state, turn, response(ID, big), T0 + 2)
    with pytest.raises(CheckpointTooLargeError):
        plan_checkpoint(saved.layout, result.state, "app", WF_TYPE, limits)

    failed = unsaveable(state, "row too large", T0 + 3)
    plan = plan_checkpoint(saved.layout, failed.state, "app", WF_TYPE, limits)
    assert plan.transactions  # it fits
    assert failed.state.is_terminal and not failed.state.inbox
    meta = failed.state.metadata
    assert meta.terminal_status == pb.ORCHESTRATION_STATUS_FAILED
    assert meta.output is None
    details = meta.failure_details()
    assert details is not None and details.errorType == PAYLOAD_ERROR_TYPE
    assert "row too large" in details.errorMessage
    assert [type(e) for e in failed.effects] == [Completed]
    assert layout_of(failed.state).metadata is not None


def test_a_child_that_cannot_be_saved_tells_its_parent() -> None:
    parent = ParentInfo(instance_id="p", execution_id="pe", task_scheduled_id=4, app_id="a")
    failed = unsaveable(_started('"in"', parent), "too large", T0)
    notify = [e for e in failed.effects if isinstance(e, NotifyParent)]
    assert len(notify) == 1
    event = notify[0].event.childWorkflowInstanceFailed
    assert event.taskScheduledId == 4 and event.failureDetails.errorType == PAYLOAD_ERROR_TYPE


def test_a_refused_child_start_fails_its_task_in_the_parent() -> None:
    parent = ParentInfo(instance_id="p", execution_id="pe", task_scheduled_id=7, app_id="a")
    start = pb.HistoryEvent()
    start.executionStarted.name = "child"
    refused = child_not_started(
        StartChild(instance_id="c", name="child", event=start, parent=parent),
        "RESOURCE_EXHAUSTED: the start event is 9 bytes",
        T0,
    )
    assert refused is not None and refused.parent == parent
    failed = refused.event.childWorkflowInstanceFailed
    assert failed.taskScheduledId == 7
    assert failed.failureDetails.errorType == CHILD_REFUSED_ERROR_TYPE
    assert failed.failureDetails.isNonRetriable
    assert "'c'" in failed.failureDetails.errorMessage
    assert "RESOURCE_EXHAUSTED" in failed.failureDetails.errorMessage
    detached = StartChild(instance_id="c", name="child", event=start, parent=None)
    assert child_not_started(detached, "no", T0) is None
