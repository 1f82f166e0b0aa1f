"""A client's external event sent again is kept once; two requests are two events; a
suspend or resume sent again changes nothing.

A router tries a call once more when the owner died before answering, though the owner
may have saved the event. The API stamps every request with its arrival
(`sidecar.engine.arrivals`: unique, never a whole millisecond), so the copy is known by
its stamp, name and data, wherever the first one is by then (inbox or history)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.arrivals import ArrivalClock
from sidecar.workflow import (
    WorkflowState,
    add_events,
    apply_response,
    execution_started_event,
    new_state,
    plan_turn,
    raised_event,
    resumed_event,
    suspended_event,
)
from sidecar.workflow.events import client_raised_event, is_client_stamped, stamped
from sidecar.workflow.testing import response

T0 = 1_700_000_000_000
ID = "wf"
ARRIVAL = T0 * 1_000_000 + 123_456  # ns, not a whole millisecond


def _running() -> WorkflowState:
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="e1", input=None, now_ms=T0
    )
    state = add_events(new_state(ID), [start])
    planned = plan_turn(state, T0)
    assert planned is not None
    return apply_response(state, planned, response(ID), T0).state


def _names(state: WorkflowState) -> list[str]:
    return [e.eventRaised.name for e in (*state.history, *state.inbox) if e.HasField("eventRaised")]


def test_a_copy_is_dropped_in_the_inbox_in_one_call_and_after_the_turn() -> None:
    go = client_raised_event("go", '"x"', ARRIVAL)
    assert is_client_stamped(go)
    state = add_events(_running(), [go])
    assert add_events(state, [go]) is state  # the first one waits in the inbox
    assert _names(add_events(_running(), [go, go])) == ["go"]
    planned = plan_turn(state, T0 + 1)
    assert planned is not None
    taken = apply_response(state, planned, response(ID), T0 + 1).state
    assert not taken.inbox and _names(taken) == ["go"]
    assert add_events(taken, [go]) is taken  # the first one is in the history


def test_another_request_with_the_same_name_and_data_is_another_event() -> None:
    state = add_events(_running(), [client_raised_event("go", '"x"', ARRIVAL)])
    again = add_events(state, [client_raised_event("go", '"x"', ARRIVAL + 1)])
    assert _names(again) == ["go", "go"]
    other_data = add_events(state, [client_raised_event("go", '"y"', ARRIVAL)])
    assert _names(other_data) == ["go", "go"]


def test_events_the_engine_makes_are_never_taken_for_copies() -> None:
    """A workflow may send one event twice in a turn: both arrive (whole milliseconds)."""
    sent = raised_event("go", '"x"', T0)
    assert not is_client_stamped(sent)
    assert _names(add_events(_running(), [sent, sent])) == ["go", "go"]


def test_a_suspend_sent_again_after_a_resume_does_not_suspend_again() -> None:
    """Two callers: one suspends (the owner saves it and dies before answering), the
    other resumes; the router then sends the first suspend again. Without its stamp it
    would suspend the instance a second time, and nothing would resume it."""
    suspend = stamped(suspended_event("first", 0), ARRIVAL)
    resume = stamped(resumed_event(None, 0), ARRIVAL + 1)
    state = add_events(add_events(_running(), [suspend]), [resume])
    assert state.status == pb.ORCHESTRATION_STATUS_RUNNING
    assert add_events(state, [suspend]) is state
    again = add_events(state, [stamped(suspended_event("first", 0), ARRIVAL + 2)])
    assert again.status == pb.ORCHESTRATION_STATUS_SUSPENDED  # another request: taken


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=50))
def test_arrival_stamps_are_unique_and_never_whole_milliseconds(steps: list[int]) -> None:
    """Whatever the clock does (standing still, stepping by whole milliseconds)."""
    now = [T0 * 1_000_000]

    def clock() -> int:
        return now[0]

    stamps = []
    arrivals = ArrivalClock(clock)
    for step in steps:
        now[0] += step * 1_000_000
        stamps.append(arrivals())
    assert stamps == sorted(set(stamps))
    assert all(s % 1_000_000 for s in stamps)
