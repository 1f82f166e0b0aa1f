"""Work that outlasts the sidecar's idle timeout (1 s here, 60 s by default): an
activity, a durable timer, an external event raised after the instance went idle. Each
completes, and the idle actors still leave.

The activity actor's mailbox is empty while its activity runs; the idle sweep used to
deactivate it after `--idle-timeout`, which cancelled the run: the outcome the app sent
later was dropped, and nothing ever told the workflow (it hung, RUNNING, until the next
placement change). Found with a 100 s activity on a default cluster."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "env": {"ACTORFLOW_SIDECAR_IDLE_TIMEOUT": "1"}}
ACTIVITY_S = 4.0  # four idle timeouts, a dozen sweeps


def test_an_activity_longer_than_the_idle_timeout_completes(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    iid = c.schedule_new_workflow("long_step", input=ACTIVITY_S, instance_id=uid("long"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == ACTIVITY_S
    # Idle actors still leave after the idle timeout: the sweep was not turned off.
    deadline = time.monotonic() + 30
    while cluster.metric("actorflow_actors_active"):
        assert time.monotonic() < deadline, "actors stayed active long after their work"
        time.sleep(0.1)  # polling the sidecar's metrics, bounded


def test_a_timer_and_an_event_after_the_idle_timeout_reach_their_workflows(
    cluster: Any, uid: Any
) -> None:
    """The workflow actors are deactivated while they wait; the timer's reminder and the
    raised event activate them again from the store."""
    c = cluster.client()
    timed = c.schedule_new_workflow("timed", input=3.0, instance_id=uid("idle-timer"))
    waiting = c.schedule_new_workflow("waits", instance_id=uid("idle-event"))
    c.wait_for_workflow_start(waiting, timeout_in_seconds=30)
    deadline = time.monotonic() + 30
    while cluster.metric("actorflow_actors_active"):  # both instances wait, deactivated
        assert time.monotonic() < deadline, "the waiting instances never went idle"
        time.sleep(0.1)  # polling the sidecar's metrics, bounded
    c.raise_workflow_event(waiting, "release", data="late")
    for iid in (timed, waiting):
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(c.get_workflow_state(timed).serialized_output) >= 3.0
    assert json.loads(c.get_workflow_state(waiting).serialized_output) == "late"


def test_a_child_that_finishes_after_its_parent_went_idle_reaches_it(
    cluster: Any, uid: Any
) -> None:
    c = cluster.client()
    iid = uid("idle-parent")
    c.schedule_new_workflow("parent", input={"wait": True}, instance_id=iid)
    deadline = time.monotonic() + 30
    while True:  # the waiting child exists (reading its state keeps it active, so
        child = c.get_workflow_state(f"{iid}-waiting")  # stop reading once it does)
        if child is not None and child.runtime_status == WorkflowStatus.RUNNING:
            break
        assert time.monotonic() < deadline, "the waiting child never started"
        time.sleep(0.1)  # polling the instance, bounded
    while cluster.metric("actorflow_actors_active"):  # the parent and the child go idle
        assert time.monotonic() < deadline, "the parent and its child never went idle"
        time.sleep(0.1)  # polling the sidecar's metrics, bounded
    c.raise_workflow_event(f"{iid}-waiting", "never", data=None)
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert [r["value"] for r in json.loads(state.serialized_output)["results"]] == [2, 4]


def test_a_turn_waiting_for_an_app_outlasts_the_idle_timeout(cluster: Any, uid: Any) -> None:
    """With no app connected, a new workflow's first turn waits in the sidecar. Its
    workflow actor must not idle out meanwhile: that dropped the turn, and only a later
    call on the instance (not the app coming back) planned it again. So nothing touches
    the instance until the sidecar's counters say it finished."""
    done = 'actorflow_workflows_finished_total{status="COMPLETED"}'
    cluster.kill_app(0)
    try:
        c = cluster.client()
        before = cluster.metric(done)
        iid = c.schedule_new_workflow("fan", input=3, instance_id=uid("no-app"))
        deadline = time.monotonic() + 30
        while not cluster.metric("actorflow_workflow_work_items_queued"):
            assert time.monotonic() < deadline, "the first turn was never queued"
            time.sleep(0.05)  # polling the sidecar's metrics, bounded
        time.sleep(3.0)  # three idle timeouts with the turn queued: the point of the test
    finally:
        cluster.start_app(0)
    deadline = time.monotonic() + 30
    while cluster.metric(done) == before:
        assert time.monotonic() < deadline, "the workflow never finished once the app was back"
        time.sleep(0.1)  # polling the sidecar's metrics, bounded
    state = c.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == 6
