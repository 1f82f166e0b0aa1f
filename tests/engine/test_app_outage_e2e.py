"""A workflow calls an activity in another app while no sidecar of that app is up (its
only sidecar was killed, as in a crash or a restart): the workflow waits, and finishes
once the app's sidecar is back.

The dispatch is refused while placement has no host for the target's actor type ("effect
DispatchActivity refused, not retried"); the sidecar's return is a placement table
change, and after every table change each sidecar wakes the running workflows it owns,
which issue their pending work again: that is what carries the activity to the app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"app_ids": ["a", "b"], "roles": {"a": "caller", "b": "callee"}}


def test_an_activity_in_an_app_whose_sidecar_is_down_runs_once_it_is_back(
    cluster: Any, uid: Any
) -> None:
    version = cluster.metric("actorflow_placement_table_version")
    again = cluster.kill_process("sidecar-1")  # app b's only sidecar
    # Placement drops the dead host (its host timeout): app b's types have no host.
    cluster.eventually(
        "placement never dropped the dead sidecar",
        lambda: cluster.metric("actorflow_placement_table_version") > version,
    )
    a = cluster.client(0)
    iid = a.schedule_new_workflow("cross_app", input=7, instance_id=uid("b-down"))
    log_path = cluster.up.data_dir / "logs" / "sidecar-0.log"
    cluster.eventually(
        "the activity's dispatch was never tried",
        lambda: "effect DispatchActivity" in log_path.read_text(errors="replace"),
    )
    again()
    cluster.kill_app(1)
    cluster.start_app(1)
    state = a.wait_for_workflow_completion(iid, timeout_in_seconds=90)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output)["tripled"] == 21
