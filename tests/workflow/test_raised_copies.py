"""A client's external event sent again is kept once; two requests are two events; a
suspend or resume sent again changes nothing.

A router tries a call once more when the owner died before answering, though the owner
may have saved the event. The API stamps every request with its arrival
(`sidecar.engine.arrivals`: unique, never a whole millisecond), so the copy is known by
its stamp, name and data, wherever the first one is by then (inbox, history, or the
marks a continue-as-new keeps of the history it empties)."""

from __future__ import annotations

from dataclasses import replace

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
from sidecar.workflow.checkpoint import METADATA_KEY, encode_metadata, history_key, load_state
from sidecar.workflow.copies import MARK_WINDOW_MS, MAX_MARKS, holds_client_request
from sidecar.workflow.events import client_raised_event, is_client_stamped, stamped
from sidecar.workflow.testing import complete_action, response

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


def _take(state: WorkflowState, now_ms: int, *actions: pb.WorkflowAction) -> WorkflowState:
    """One turn: the app is given the inbox and answers with `actions`."""
    planned = plan_turn(state, now_ms)
    assert planned is not None
    return apply_response(state, planned, response(ID, *actions), now_ms).state


def _continued(state: WorkflowState, now_ms: int) -> WorkflowState:
    """A turn that takes the inbox (a tick if it is empty) and continues as new; then
    the new generation's first turn (nothing asked of the app)."""
    if not state.inbox:
        state = add_events(state, [raised_event("tick", None, now_ms)])
    action = complete_action(1, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, result='"next"')
    continued = _take(state, now_ms, action)
    assert continued.generation == state.generation + 1 and not continued.history[1:]
    return _take(continued, now_ms)


def test_a_copy_sent_after_a_continue_as_new_took_the_request_is_dropped() -> None:
    """A monitor that continues as new on each event: the new owner takes the saved event
    and continues as new before the router's copy arrives. The new generation's history
    no longer holds the event; the marks do."""
    go = client_raised_event("go", '"x"', ARRIVAL)
    suspend = stamped(suspended_event("hold", 0), ARRIVAL + 1)
    resume = stamped(resumed_event(None, 0), ARRIVAL + 2)
    state = _continued(add_events(_running(), [go, suspend, resume]), T0 + 1)
    assert _names(state) == []
    for copy in (go, suspend, resume):
        assert holds_client_request(state, copy)
        assert add_events(state, [copy]) is state
    assert state.status == pb.ORCHESTRATION_STATUS_RUNNING
    # Other requests are taken: another arrival, other data.
    other = add_events(state, [client_raised_event("go", '"x"', ARRIVAL + 3)])
    assert _names(other) == ["go"]
    assert _names(add_events(state, [client_raised_event("go", '"y"', ARRIVAL)])) == ["go"]
    # Through a second continue-as-new, and through the store.
    again = _continued(state, T0 + 2)
    assert add_events(again, [go]) is again
    rows = {history_key(i): e.SerializeToString() for i, e in enumerate(again.history)}
    loaded = load_state({**rows, METADATA_KEY: encode_metadata(again)})
    assert loaded == again and loaded.earlier_requests
    bare = encode_metadata(replace(again, earlier_requests=()))  # a row without marks
    assert load_state({**rows, METADATA_KEY: bare}) == replace(again, earlier_requests=())


def test_marks_are_kept_for_a_window_and_up_to_a_count() -> None:
    state = _running()
    arrivals = [ARRIVAL + i * 1_000 for i in range(MAX_MARKS + 5)]
    state = add_events(state, [client_raised_event("e", None, a) for a in arrivals])
    kept = _continued(state, T0 + 1)
    assert len(kept.earlier_requests) == MAX_MARKS
    oldest, newest = client_raised_event("e", None, arrivals[0]), arrivals[-1]
    assert not holds_client_request(kept, oldest)  # the newest are kept
    assert holds_client_request(kept, client_raised_event("e", None, newest))
    later = _continued(kept, T0 + MARK_WINDOW_MS + 1)  # every mark is older than the window
    assert later.earlier_requests == ()
    assert not holds_client_request(later, client_raised_event("e", None, newest))


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
