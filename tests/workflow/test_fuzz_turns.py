"""DESIGN.md 4.5 for the app's answers: seeded random WorkflowResponses, from plausible
(the SDK's actions with edge values: duplicate and negative ids, empty names, timers
before year 1 or after 9999, continue-as-new carrying random events) to any message the
wire can carry, applied turn after turn to one instance, with completions, raised
events, suspends, resumes and terminations arriving between the turns.

Whatever the app answers, the engine either applies it or fails the instance as the
shell does (`failed_answer`), and the state it reaches is one the sidecar can serve:
its checkpoint saves and loads back to the same state, the recovery work derived from
the loaded state is the same, GetInstance and the next turn's request carry only
timestamps the SDK can convert, and every effect, fresh or recovered, can be sent
(dispatches encode and decode, timers and starts carry valid times)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from actorflow.fuzzing import STRINGS, workflow_response
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.effects import decode_dispatch, encode_dispatch
from sidecar.engine.status import instance_response
from sidecar.workflow import (
    DispatchActivity,
    InvalidResponseError,
    ScheduleStart,
    ScheduleTimer,
    StartChild,
    StoredLayout,
    WorkflowState,
    add_events,
    apply_response,
    load_state,
    pending_work,
    plan_checkpoint,
    plan_turn,
    settle,
    store_key,
)
from sidecar.workflow.effects import Effect, TurnResult
from sidecar.workflow.events import (
    OPTIONAL_TIMER_SECONDS,
    child_completed_event,
    client_raised_event,
    resumed_event,
    suspended_event,
    task_completed_event,
    task_failed_event,
    terminated_event,
    timer_fired_event,
    timestamp_problem,
    to_timestamp,
)
from sidecar.workflow.finish import failed_answer
from sidecar.workflow.testing import DictStore

from .engine_helpers import ID, T0, started

APP, TYPE = "app", "dapr.internal.default.app.workflow"
PREFIX = store_key(APP, TYPE, ID, "")
TURNS = 12
SEEDS = 800


def _response(rnd: random.Random, state: WorkflowState, now: int) -> pb.WorkflowResponse:
    instance_id = rnd.choice([ID] * 12 + ["", "other"])
    return workflow_response(rnd, instance_id, len(state.history) + 1, now)


def _arrivals(rnd: random.Random, state: WorkflowState, now: int) -> WorkflowState:
    """What may reach the instance between turns: outcomes of its open work (some for
    another generation or execution), and client requests."""
    open_ = state.open
    events: list[pb.HistoryEvent] = []
    for task_id, scheduled in open_.tasks.items():
        if rnd.random() < 0.5:
            execution = rnd.choice([scheduled.taskScheduled.taskExecutionId, "other"])
            if rnd.random() < 0.7:
                events.append(task_completed_event(task_id, "2", now, execution))
            else:
                failure = pb.TaskFailureDetails(errorType="E", errorMessage="boom")
                events.append(task_failed_event(task_id, failure, now, execution))
    for timer_id, created in open_.timers.items():
        fire_at = created.timerCreated.fireAt
        if fire_at.seconds < OPTIONAL_TIMER_SECONDS and rnd.random() < 0.5:  # others never fire
            events.append(timer_fired_event(timer_id, fire_at.seconds * 1000, now))
    generation = rnd.choice([state.generation, state.generation, state.generation + 1])
    state = add_events(state, events, generation=generation)
    for task_id in open_.children:
        if rnd.random() < 0.4:
            execution = rnd.choice([state.metadata.execution_id, "elsewhere"])
            done = child_completed_event(task_id, '"c"', now)
            state = add_events(state, [done], execution_id=execution)
    client: list[Callable[[], pb.HistoryEvent]] = [
        lambda: client_raised_event(rnd.choice(STRINGS), rnd.choice([None, "1"]), now * 10**6),
        lambda: suspended_event(None, now),
        lambda: resumed_event(None, now),
        lambda: terminated_event(rnd.choice([None, '"t"']), now, recurse=rnd.random() < 0.5),
    ]
    weights = [6, 2, 2, 1]
    picked = rnd.choices(client, weights, k=rnd.randint(0, 2))
    return add_events(state, [make() for make in picked])


def _check_timestamps(msg: Any) -> None:
    """Every Timestamp set in `msg` converts, as the SDK converts it."""
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name == "google.protobuf.Timestamp":
            assert timestamp_problem(value) is None, (field.name, value)
            value.ToDatetime()
        elif not field.is_repeated:
            _check_timestamps(value)


def _check_effect(effect: Effect) -> None:
    if isinstance(effect, DispatchActivity):
        assert decode_dispatch(encode_dispatch(effect, APP, fresh=effect.fresh))[0] == effect
    elif isinstance(effect, ScheduleTimer):
        assert timestamp_problem(to_timestamp(effect.fire_at_ms)) is None, effect
    elif isinstance(effect, ScheduleStart):
        assert timestamp_problem(to_timestamp(effect.start_at_ms)) is None, effect
    elif isinstance(effect, StartChild):
        pb.HistoryEvent.FromString(effect.event.SerializeToString())


def _servable(store: DictStore, layout: StoredLayout, result: TurnResult) -> StoredLayout:
    """Save the state, load it back, and check what the sidecar would serve from it."""
    state = result.state
    plan = plan_checkpoint(layout, state, APP, TYPE, store.limits)
    store.run(plan, store.version(plan.metadata_key))
    loaded = load_state(store.rows(PREFIX))
    assert loaded == state
    assert pending_work(loaded) == pending_work(state)
    answer = instance_response(loaded, True)
    _check_timestamps(pb.GetInstanceResponse.FromString(answer.SerializeToString()))
    for effect in (*result.effects, *pending_work(loaded)):
        _check_effect(effect)
    planned = plan_turn(loaded, T0) if settle(loaded, T0) is None else None
    if planned is not None:  # the next turn, as the app would get it
        request = planned.full_request()
        for event in (*request.pastEvents, *request.newEvents):
            if event.timerCreated.fireAt.seconds < OPTIONAL_TIMER_SECONDS:  # else "never",
                _check_timestamps(event)  # kept as the app gave it (test_engine_turns)
        pb.WorkflowRequest.FromString(request.SerializeToString())
    return plan.layout


def _one_turn(
    rnd: random.Random, state: WorkflowState, now: int, seen: Counter[str]
) -> TurnResult | None:
    settled = settle(state, now)
    if settled is not None:
        seen["terminated"] += 1
        return settled
    planned = plan_turn(state, now)
    if planned is None:
        return None
    answer = _response(rnd, state, now)
    try:
        result = apply_response(state, planned, answer, now, own_app=APP)
    except InvalidResponseError as exc:  # as the shell does: the instance fails
        seen["refused"] += 1
        return failed_answer(state, str(exc), now)
    seen["applied"] += 1
    if result.state.generation > state.generation:
        seen["continued as new"] += 1
    elif result.state.is_terminal:
        seen["finished"] += 1
    return result


def _run(seed: int, seen: Counter[str]) -> None:
    rnd = random.Random(seed)
    store = DictStore()
    state = started()
    layout = _servable(store, StoredLayout(), TurnResult(state))
    for step in range(TURNS):
        now = T0 + 1_000 * (step + 1)
        result = _one_turn(rnd, state, now, seen)
        if result is not None:
            layout = _servable(store, layout, result)
            state = result.state
        if state.is_terminal:
            return
        state = _arrivals(rnd, state, now + 500)
        layout = _servable(store, layout, TurnResult(state))


def test_any_answer_of_the_app_leaves_a_state_the_sidecar_can_serve() -> None:
    seen: Counter[str] = Counter()
    for seed in range(SEEDS):
        try:
            _run(seed, seen)
        except Exception as exc:
            raise AssertionError(f"seed {seed}: {exc!r}") from exc
    # Every way a turn can go was taken, many times over.
    for outcome in ("applied", "refused", "continued as new", "finished", "terminated"):
        assert seen[outcome] >= 20, seen


@pytest.mark.parametrize("ids", [[1, 1], [5, 3, 5], [-1, -1]])
def test_actions_that_reuse_an_id_are_served_too(ids: list[int]) -> None:
    """The SDK numbers its actions; an app that repeats an id gets a state that still
    saves, loads and recovers (what it then means to the SDK is its own)."""
    store = DictStore()
    state = started()
    layout = _servable(store, StoredLayout(), TurnResult(state))
    planned = plan_turn(state, T0 + 10)
    assert planned is not None
    answer = pb.WorkflowResponse(instanceId=ID)
    for action_id in ids:
        action = answer.actions.add(id=action_id)
        action.scheduleTask.name = "act"
    result = apply_response(state, planned, answer, T0 + 10)
    _servable(store, layout, result)
