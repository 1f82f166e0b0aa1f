"""Checkpoint planning and loading through a dict store."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import ConflictError, StoreLimits, write_bytes
from sidecar.workflow import (
    METADATA_KEY,
    CheckpointPlan,
    CheckpointTooLargeError,
    StoredLayout,
    WorkflowState,
    add_events,
    apply_response,
    execution_started_event,
    history_key,
    inbox_key,
    keys_to_load,
    layout_of,
    load_finished,
    load_state,
    new_state,
    pending_work,
    plan_checkpoint,
    plan_turn,
    raised_event,
    store_key,
    task_completed_event,
)
from sidecar.workflow.checkpoint import encode_metadata
from sidecar.workflow.testing import DictStore, complete_action, response, schedule_task_action

T0 = 1_700_000_000_000
ID = "wf"
APP, TYPE = "app", "dapr.internal.default.app.workflow"
PREFIX = store_key(APP, TYPE, ID, "")
BIG = StoreLimits(1_000_000, 1 << 30)


def start() -> WorkflowState:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="e1", input='"x"', now_ms=T0
    )
    return add_events(new_state(ID), [event])


def turn(
    state: WorkflowState, *actions: pb.WorkflowAction, custom: str | None = None
) -> WorkflowState:
    planned = plan_turn(state, T0 + 1)
    assert planned is not None
    return apply_response(
        state, planned, response(ID, *actions, custom_status=custom), T0 + 1
    ).state


def fan_out(n: int) -> WorkflowState:
    return turn(start(), *[schedule_task_action(i, "act", "x" * 20) for i in range(1, n + 1)])


def save(
    store: DictStore, before: StoredLayout, state: WorkflowState, version: int, limits: StoreLimits
) -> tuple[CheckpointPlan, int]:
    plan = plan_checkpoint(before, state, APP, TYPE, limits)
    return plan, store.run(plan, version)


def loaded(store: DictStore) -> WorkflowState | None:
    return load_state(store.rows(PREFIX))


def test_keys_follow_the_dapr_layout() -> None:
    store = DictStore()
    state = start()
    plan, _ = save(store, StoredLayout(), state, 0, BIG)
    assert set(store.rows(PREFIX)) == {"metadata", "inbox-000000"}
    assert plan.metadata_key == "app||dapr.internal.default.app.workflow||wf||metadata"
    assert len(plan.transactions) == 1 and plan.final == 0
    assert history_key(7) == "history-000007" and inbox_key(1234567) == "inbox-1234567"


def test_round_trip_through_every_step() -> None:
    store = DictStore()
    layout, version = StoredLayout(), 0
    states = [start()]
    states.append(fan_out(3))
    states.append(add_events(states[-1], [task_completed_event(2, "4", T0)]))
    states.append(turn(states[-1], custom="half"))
    states.append(add_events(states[-1], [raised_event("e", None, T0)]))
    states.append(turn(states[-1], complete_action(4, 1, '"ok"'), custom=None))
    for state in states:
        plan, version = save(store, layout, state, version, BIG)
        layout = plan.layout
        assert loaded(store) == state
        assert layout == layout_of(state)
    assert "customStatus" not in store.rows(PREFIX)
    assert loaded(store) is not None and loaded(store).status == 1  # type: ignore[union-attr]


def test_only_changed_keys_are_written() -> None:
    store = DictStore()
    state = fan_out(3)
    plan, version = save(store, StoredLayout(), state, 0, BIG)
    nxt = add_events(state, [task_completed_event(1, "1", T0)])
    plan2 = plan_checkpoint(plan.layout, nxt, APP, TYPE, BIG)
    (txn,) = plan2.transactions
    assert sorted(k[len(PREFIX) :] for k in txn.writes) == ["inbox-000001", "metadata"]
    after = turn(nxt)
    store.run(plan2, version)
    plan3 = plan_checkpoint(plan2.layout, after, APP, TYPE, BIG)
    (txn3,) = plan3.transactions
    written = {k[len(PREFIX) :]: v for k, v in txn3.writes.items()}
    assert written["inbox-000001"] is None  # consumed
    assert sorted(k for k in written if k.startswith("history")) == [
        "history-000005",
        "history-000006",
    ]


def test_a_thousand_way_fan_out_respects_the_limits() -> None:
    limits = StoreLimits(128, 64 * 1024)
    store = DictStore(limits)
    state = fan_out(1000)
    plan, version = save(store, StoredLayout(), start(), 0, limits)
    plan, version = save(store, plan.layout, state, version, limits)
    assert len(plan.transactions) >= 8
    meta = plan.metadata_key
    for index, txn in enumerate(plan.transactions):
        assert len(txn.writes) <= limits.max_ops
        assert write_bytes(txn.writes) <= limits.max_bytes
        assert meta in txn.writes  # every transaction moves the guard
        if index < plan.final:
            assert txn.writes[meta] != plan.layout.metadata  # old metadata, unchanged
    assert plan.transactions[plan.final].writes[meta] == plan.layout.metadata
    assert plan.expect(version) == {meta: version}
    assert loaded(store) == state


def test_orphans_of_a_crashed_checkpoint_are_ignored_and_overwritten() -> None:
    limits = StoreLimits(32, 1 << 20)
    store = DictStore(limits)
    before_state = start()
    plan0, version = save(store, StoredLayout(), before_state, 0, limits)
    state = fan_out(200)
    plan = plan_checkpoint(plan0.layout, state, APP, TYPE, limits)
    assert plan.final > 2
    crashed_version = store.run(plan, version, stop_after=plan.final)  # final never ran
    assert any(k.startswith("history-") for k in store.rows(PREFIX))
    assert loaded(store) == before_state  # the orphans are invisible
    rows = store.rows(PREFIX)
    assert all(not k.startswith("history") for k in keys_to_load(rows[METADATA_KEY]))
    # The reactivated actor starts again from what it loaded; the chain of versions
    # continues from the stored metadata version.
    again = plan_checkpoint(plan0.layout, state, APP, TYPE, limits)
    store.run(again, store.version(plan.metadata_key))
    assert loaded(store) == state
    assert crashed_version == store.version(plan.metadata_key) - len(again.transactions)


def test_a_stale_activation_is_refused() -> None:
    store = DictStore()
    plan, version = save(store, StoredLayout(), start(), 0, BIG)
    first = fan_out(2)
    save(store, plan.layout, first, version, BIG)
    with pytest.raises(ConflictError):
        save(store, plan.layout, fan_out(3), version, BIG)  # loaded `version`, now stale
    assert loaded(store) == first


def test_a_stale_activation_cannot_interleave_chunks() -> None:
    limits = StoreLimits(16, 1 << 20)
    store = DictStore(limits)
    plan0, version = save(store, StoredLayout(), start(), 0, limits)
    mine = plan_checkpoint(plan0.layout, fan_out(40), APP, TYPE, limits)
    theirs = plan_checkpoint(plan0.layout, fan_out(41), APP, TYPE, limits)
    v_mine = store.transact(mine.transactions[0].writes, expect=mine.expect(version))
    with pytest.raises(ConflictError):
        store.transact(theirs.transactions[0].writes, expect=theirs.expect(version))
    for txn in mine.transactions[1:]:
        v_mine = store.transact(txn.writes, expect=mine.expect(v_mine))
    assert loaded(store) == fan_out(40)


def test_continue_as_new_drops_the_old_history_keys() -> None:
    limits = StoreLimits(8, 1 << 20)
    store = DictStore(limits)
    state = fan_out(20)
    plan, version = save(store, StoredLayout(), state, 0, limits)
    action = complete_action(21, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, result="2")
    continued = turn(add_events(state, [task_completed_event(1, "1", T0)]), action)
    plan, version = save(store, plan.layout, continued, version, limits)
    assert len(plan.transactions) > plan.final + 1  # the deletes trail the final
    for txn in plan.transactions[plan.final + 1 :]:
        assert all(v is None for k, v in txn.writes.items() if k != plan.metadata_key)
    assert not any(k.startswith("history") for k in store.rows(PREFIX))
    assert loaded(store) == continued
    restarted = turn(continued)
    plan, version = save(store, plan.layout, restarted, version, limits)
    assert loaded(store) == restarted
    assert restarted.generation == 2


def test_an_event_too_big_for_any_transaction_is_refused() -> None:
    limits = StoreLimits(128, 4096)
    state = turn(start(), schedule_task_action(1, "act", "x" * 10_000))
    with pytest.raises(CheckpointTooLargeError):
        plan_checkpoint(StoredLayout(), state, APP, TYPE, limits)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    st.integers(1, 120),
    st.integers(3, 40),
    st.integers(2_000, 20_000),
)
def test_chunked_plans_always_fit_and_round_trip(n: int, max_ops: int, max_bytes: int) -> None:
    limits = StoreLimits(max_ops, max_bytes)
    store = DictStore(limits)
    plan, version = save(store, StoredLayout(), start(), 0, limits)
    state = fan_out(n)
    plan, version = save(store, plan.layout, state, version, limits)
    assert loaded(store) == state
    state = add_events(state, [task_completed_event(i, "r" * 30, T0) for i in range(1, n + 1)])
    plan, version = save(store, plan.layout, state, version, limits)
    assert loaded(store) == state
    state = turn(state, complete_action(n + 1, 1, '"done"'))
    plan, version = save(store, plan.layout, state, version, limits)
    assert loaded(store) == state
    live = set(keys_to_load(store.rows(PREFIX)[METADATA_KEY])) | {"metadata"}
    assert set(store.rows(PREFIX)) == live  # nothing left behind without a crash


def test_recovery_work_survives_a_reload() -> None:
    store = DictStore()
    state = add_events(fan_out(4), [task_completed_event(3, "9", T0)])
    save(store, StoredLayout(), state, 0, BIG)
    reloaded = loaded(store)
    assert reloaded is not None
    assert pending_work(reloaded) == pending_work(state)
    assert len(pending_work(reloaded)) == 5  # four activities and a turn to run


def _child(task_id: int) -> pb.WorkflowAction:
    action = pb.WorkflowAction(id=task_id)
    action.createChildWorkflow.instanceId = f"child-{task_id}"
    action.createChildWorkflow.name = "kid"
    return action


def test_a_finished_instance_records_whether_it_created_children() -> None:
    """A purge of a finished instance learns from its metadata row alone whether it must
    read the history to find children to purge; a row written before this was recorded
    says neither."""
    ok = complete_action(9, pb.ORCHESTRATION_STATUS_COMPLETED, '"ok"')
    running = turn(start(), _child(1))
    assert load_finished({METADATA_KEY: encode_metadata(running)}) is None
    parent = load_finished({METADATA_KEY: encode_metadata(turn(start(), _child(1), ok))})
    alone = load_finished({METADATA_KEY: encode_metadata(turn(start(), ok))})
    assert parent is not None and alone is not None
    assert (parent.has_children, alone.has_children) == (True, False)
    assert parent.state.status == pb.ORCHESTRATION_STATUS_COMPLETED
    assert parent.state.history == ()  # the summary only
    old = msgpack.unpackb(encode_metadata(turn(start(), _child(1), ok)))
    del old["kids"]
    before = load_finished({METADATA_KEY: msgpack.packb(old)})
    assert before is not None and before.has_children is None
