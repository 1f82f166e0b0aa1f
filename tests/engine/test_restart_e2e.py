"""A whole-cluster restart mid-workflow (DESIGN.md 4.1): `actorflow up` stopped with
SIGTERM while activities run, a durable timer is pending and a start is scheduled for
later, started again from the same data directory, new app processes: every workflow
completes, the scheduled one not before its time (the sidecars resume the running
instances they find through the index rows; timers and scheduled starts live in the
reminders service). On SQLite and on etcd (its three members stopped and started with
the rest)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

TIMER_S = 4.0
SCHEDULED_S = 8.0  # a start this far ahead is still waiting when the restart begins


@pytest.mark.parametrize(
    "cluster", [{"sidecars": 2}, {"sidecars": 2, "store": "etcd"}], ids=["sqlite", "etcd"],
    indirect=True,
)  # fmt: skip
def test_whole_cluster_restart_mid_workflow(cluster: Any, uid: Any, tmp_path: Path) -> None:
    c = cluster.client()
    marks = tmp_path / "starts"
    args = {"n": 4, "wave": 2, "pause": 1.0, "sleep": 1.0, "path": str(marks)}
    fan = c.schedule_new_workflow("slow_fan", input=args, instance_id=uid("restart-fan"))
    timed = c.schedule_new_workflow("timed", input=TIMER_S, instance_id=uid("restart-timer"))
    start_at = datetime.now(UTC) + timedelta(seconds=SCHEDULED_S)
    later = c.schedule_new_workflow(
        "deterministic", instance_id=uid("restart-scheduled"), start_at=start_at
    )
    deadline = time.monotonic() + 30
    while not (marks.exists() and len(marks.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline, "the first wave never started"
        time.sleep(0.02)  # polling the app's record of started activities, bounded
    started = c.wait_for_workflow_start(timed, timeout_in_seconds=30)  # slow machines
    assert started is not None and started.runtime_status == WorkflowStatus.RUNNING
    pending = c.get_workflow_state(later)
    assert pending is not None and pending.runtime_status == WorkflowStatus.PENDING
    cluster.restart()
    c = cluster.client()
    for iid in (fan, timed, later):
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=90)
        assert state is not None, f"{iid} lost in the restart"
        assert state.runtime_status == WorkflowStatus.COMPLETED, state.failure_details
    fan_state = c.get_workflow_state(fan)
    assert json.loads(fan_state.serialized_output) == sum(2 * i for i in range(4))
    timer_state = c.get_workflow_state(timed)
    assert json.loads(timer_state.serialized_output) >= TIMER_S  # never early
    assert sorted(set(marks.read_text().splitlines())) == ["0", "1", "2", "3"]
    first_turn = datetime.fromisoformat(
        json.loads(c.get_workflow_state(later).serialized_output)["first"]["now"]
    )
    first_turn = first_turn if first_turn.tzinfo else first_turn.replace(tzinfo=UTC)
    assert first_turn >= start_at.replace(microsecond=start_at.microsecond // 1000 * 1000)
