"""Multi-app workflows end to end (DESIGN.md 3.3): `actorflow up --app-ids a,b`, one
sidecar per app, and beside each an SDK app with its own registrations (app `a` has the
`cross_app` workflow only; app `b` the activities and the child workflow it calls). The
calls are routed by app id; failures in `b` surface in `a` as task failures."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"app_ids": ["a", "b"], "roles": {"a": "caller", "b": "callee"}}


def test_activity_and_child_workflow_in_another_app(cluster: Any, uid: Any) -> None:
    a, b = cluster.client(0), cluster.client(1)
    iid = a.schedule_new_workflow("cross_app", input=7, instance_id=uid("xapp"))
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None, "vanished"
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.failure_details
    out = json.loads(state.serialized_output)
    assert out["tripled"] == 21
    assert out["child"] == {"child": f"{iid}-b", "value": 21}
    activity_error, child_error = out["errors"]
    assert "from b: activity" in activity_error
    assert "from b: child" in child_error
    # The child lives in app b: its sidecar knows it, app a's does not.
    child = b.get_workflow_state(f"{iid}-b")
    assert child is not None and child.runtime_status == WorkflowStatus.COMPLETED
    assert a.get_workflow_state(f"{iid}-b") is None
    assert b.get_workflow_state(iid) is None


def test_client_calls_routed_by_app_id(cluster: Any, uid: Any) -> None:
    a = cluster.client(0)
    iid = a.schedule_new_workflow(
        "remote_child", input={"x": 2}, instance_id=uid("routed"), app_id="b"
    )
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=30, app_id="b")
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output)["value"] == 6
    assert a.get_workflow_state(iid) is None  # not in app a


def wait_status(c: Any, iid: str, status: WorkflowStatus, app_id: str | None = None) -> None:
    deadline = time.monotonic() + 30
    while True:
        state = c.get_workflow_state(iid, app_id=app_id)
        if state is not None and state.runtime_status == status:
            return
        assert time.monotonic() < deadline, f"{iid} never reached {status}: {state}"
        time.sleep(0.05)  # polling the workflow's status through the API, bounded


def test_recursive_terminate_and_purge_across_apps(cluster: Any, uid: Any) -> None:
    a = cluster.client(0)
    iid = a.schedule_new_workflow("cross_tree", input=None, instance_id=uid("xtree"))
    child = f"{iid}-w"
    wait_status(a, child, WorkflowStatus.RUNNING, app_id="b")
    a.terminate_workflow(iid, recursive=True)
    wait_status(a, iid, WorkflowStatus.TERMINATED)
    wait_status(a, child, WorkflowStatus.TERMINATED, app_id="b")
    a.purge_workflow(iid, recursive=True)
    assert a.get_workflow_state(iid) is None
    assert a.get_workflow_state(child, app_id="b") is None


def test_a_purge_deletes_the_rows_of_activities_run_in_another_app(cluster: Any, uid: Any) -> None:
    """An activity run in app `b` keeps its saved outcome under `b`'s keys; the purge of
    the calling instance (app `a`) looked under `a`'s alone and left both of them."""
    a = cluster.client(0)
    iid = a.schedule_new_workflow("cross_app", input=3, instance_id=uid("xpurge"))
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    path = cluster.info["store"]["url"].removeprefix("sqlite://")
    in_b = f"b||dapr.internal.default.b.activity||{iid}::"
    assert len([key for key in rows_of(path, iid) if key.startswith(in_b)]) == 2
    a.purge_workflow(iid, recursive=True)
    assert [key for key in rows_of(path, iid) if key.startswith(in_b)] == []
    # The row the child's last activity saves as the child ends may land after the
    # purge: `b`'s activity sweep deletes it (`--activity-sweep`, 5 s).
    cluster.eventually("rows left", lambda: rows_of(path, iid) == [], timeout_s=30)


def rows_of(path: str, instance_id: str) -> list[str]:
    """Every store row whose key names `instance_id` (its children's ids include it)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        query = "SELECT key FROM kv WHERE instr(key, ?) > 0"
        return [key for (key,) in db.execute(query, (instance_id,))]
