"""A durable timer started while the whole reminders service is down (every node killed)
for longer than the sidecar's idle timeout and its reminders client's deadline: the
workflow still completes once the service is back, with nothing touching the instance
meanwhile.

The workflow actor used to count as idle while its timer's reminder could not be
created (its runner had finished; the attempts ran in the effect runner): the idle sweep
deactivated it, which cancelled the attempts, and nothing created the reminder again
until something else touched the instance (a client's call, an event, a placement
change). A workflow nobody waited on stayed RUNNING for good."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

IDLE_S = 1.0
CLUSTER = {"sidecars": 1, "env": {"ACTORFLOW_SIDECAR_IDLE_TIMEOUT": str(IDLE_S)}}
COMPLETED = 'actorflow_workflows_finished_total{status="COMPLETED"}'


def test_a_timer_started_while_reminders_are_down_fires_once_they_are_back(
    cluster: Any, uid: Any
) -> None:
    nodes = [name for name in cluster.info["pids"] if name.startswith("reminders")]
    assert len(nodes) == 3
    restarts = [cluster.kill_process(name) for name in nodes]
    done_before = cluster.metric(COMPLETED)
    c = cluster.client()
    iid = c.schedule_new_workflow("timed", input=0.5, instance_id=uid("outage"))
    # The sidecar's reminders client retries a create for 10 s before the attempt fails
    # (then the effect runner tries again, after a backoff): wait for that failure, ten
    # idle timeouts, before the service comes back.
    log_path = cluster.up.data_dir / "logs" / "sidecar-0.log"
    cluster.eventually(  # (the code before cancelled the attempt with the idle actor)
        "the timer's attempt was dropped, not retried",
        lambda: "effect ScheduleTimer failed" in log_path.read_text(errors="replace"),
        timeout_s=40,
    )
    for again in restarts:
        again()
    # Watched through the sidecar's metrics only: a client call would activate the
    # instance, and the activation would re-issue the timer by itself.
    cluster.eventually(
        "the workflow never finished",
        lambda: cluster.metric(COMPLETED) != done_before,
        timeout_s=90,
    )
    state = c.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) >= 0.5
