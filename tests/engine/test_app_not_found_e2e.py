"""An activity or a child workflow for an app no sidecar hosts (Dapr's multi-app rule:
the call is retried while the app does not exist, and then fails through the workflow's
retry policy). `actorflow up --app-ids a` with a call timeout of 8 s: app `a` calls app
`b`, which is not there at first and joins later.

Before: the dispatch was refused at once ("not hosted"), never retried, and the
workflow waited for ever, even after app `b` came up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

WAIT_S = 8
CLUSTER = {
    "app_ids": ["a"],
    "roles": {"a": "caller", "b": "callee"},
    "env": {"ACTORFLOW_SIDECAR_CALL_TIMEOUT": str(WAIT_S)},
}


def test_tasks_for_an_app_no_sidecar_hosts_fail_after_the_wait(cluster: Any, uid: Any) -> None:
    a = cluster.client(0)
    iid = a.schedule_new_workflow("reach_b", input=5, instance_id=uid("nowhere"))
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=6 * WAIT_S)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    out = json.loads(state.serialized_output)
    for key in ("activity_error", "child_error"):
        assert "no sidecar hosts app 'b'" in out[key], out


def test_a_task_waits_for_an_app_that_joins_in_time(cluster: Any, uid: Any) -> None:
    a = cluster.client(0)
    iid = a.schedule_new_workflow("reach_b", input=5, instance_id=uid("later"))
    added = asyncio.run(cluster.up.scale("--add", "--app-id", "b"))  # while the task waits
    assert added.get("ok"), added
    cluster.info = cluster.up.cluster()
    cluster.start_app(len(cluster.info["sidecars"]) - 1)
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    out = json.loads(state.serialized_output)
    assert out == {"tripled": 15, "child": {"child": f"{iid}-b", "value": 15}}, out
