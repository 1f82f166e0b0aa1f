"""The activity actor's pure part."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import (
    ActivityStatus,
    DispatchActivity,
    NotifyWorkflow,
    accept_dispatch,
    add_events,
    complete,
    decode_activity,
    encode_activity,
    execution_started_event,
    new_activity,
    new_state,
    recover,
)
from sidecar.workflow.activity import INVALID_ACTIVITY_RESPONSE_ERROR_TYPE
from sidecar.workflow.errors import CorruptStateError

T0 = 1_700_000_000_000
DISPATCH = DispatchActivity(
    instance_id="wf",
    execution_id="e1",
    generation=2,
    task_id=5,
    name="act",
    input='"in"',
    task_execution_id="te-5",
    target_app_id="other",
)


def ok(result: str | None = '"out"') -> pb.ActivityResponse:
    res = pb.ActivityResponse(instanceId="wf", taskId=5)
    if result is not None:
        res.result.value = result
    return res


def test_completion_yields_one_notification_with_the_task_id() -> None:
    state = new_activity(DISPATCH)
    done, notify = complete(state, ok(), T0)
    assert done.status is ActivityStatus.DONE
    assert isinstance(notify, NotifyWorkflow) and notify.generation == 2
    event = notify.event.taskCompleted
    assert (event.taskScheduledId, event.result.value, event.taskExecutionId) == (
        5,
        '"out"',
        "te-5",
    )
    again, none = complete(done, ok('"other"'), T0 + 1)
    assert again is done and none is None


def test_failure_details_are_kept() -> None:
    res = pb.ActivityResponse(instanceId="wf", taskId=5)
    res.failureDetails.errorType = "ValueError"
    res.failureDetails.errorMessage = "bad"
    done, notify = complete(new_activity(DISPATCH), res, T0)
    assert notify is not None and notify.event.taskFailed.failureDetails == res.failureDetails
    assert recover(done) == notify


@pytest.mark.parametrize(
    "wrong",
    [pb.ActivityResponse(instanceId="wf", taskId=6), pb.ActivityResponse(instanceId="x", taskId=5)],
)
def test_an_answer_naming_another_task_fails_the_task(wrong: pb.ActivityResponse) -> None:
    """Not dropped (the app has let go of its work item: the workflow would wait for
    ever), nor taken as this task's result: a non-retriable failure that says why."""
    wrong.result.value = '"not yours"'
    done, notify = complete(new_activity(DISPATCH), wrong, T0)
    assert done.status is ActivityStatus.DONE and done.result is None
    assert notify is not None and notify.event.taskFailed.taskScheduledId == 5
    failure = notify.event.taskFailed.failureDetails
    assert failure.errorType == INVALID_ACTIVITY_RESPONSE_ERROR_TYPE and failure.isNonRetriable
    assert "given to 'wf'#5" in failure.errorMessage and "'act'" in failure.errorMessage
    assert recover(done) == notify
    again, none = complete(done, ok(), T0 + 1)  # the right answer, too late
    assert again is done and none is None


def test_an_answer_that_names_no_instance_is_taken() -> None:
    _, notify = complete(new_activity(DISPATCH), pb.ActivityResponse(taskId=5), T0)
    assert notify is not None and notify.event.HasField("taskCompleted")


def test_state_round_trips_and_recovers() -> None:
    state = new_activity(DISPATCH)
    assert decode_activity(encode_activity(state)) == state
    assert recover(state) == DISPATCH
    assert accept_dispatch(state, DISPATCH) is state
    done, _ = complete(state, ok(None), T0)
    assert decode_activity(encode_activity(done)) == done
    with pytest.raises(CorruptStateError):
        decode_activity(b"\xc1")


def test_the_notification_is_accepted_by_the_workflow_once() -> None:
    start = execution_started_event(
        name="f", instance_id="wf", execution_id="e1", input=None, now_ms=T0
    )
    wf = add_events(new_state("wf", generation=2), [start])
    _, notify = complete(new_activity(DISPATCH), ok(), T0)
    assert notify is not None
    # Task 5 was never scheduled in this state: dropped, like any unknown completion.
    assert add_events(wf, [notify.event], generation=notify.generation) is wf


def test_a_dispatch_of_another_scheduling_replaces_the_stored_outcome() -> None:
    """A purged instance id started again reuses activity actor ids: the new scheduling
    (another task execution id, or execution id) must run, not get the old outcome."""
    done, _ = complete(new_activity(DISPATCH), ok(), T0)
    assert accept_dispatch(done, DISPATCH) is done
    for other in (
        replace(DISPATCH, task_execution_id="te-new"),
        replace(DISPATCH, task_execution_id="", execution_id="e2"),
    ):
        fresh = accept_dispatch(done, other)
        assert fresh.status is ActivityStatus.PENDING and fresh.request == other
    same_exec = replace(DISPATCH, task_execution_id="")
    assert accept_dispatch(done, same_exec) is done
