"""Rows of activities no one will read again go away (`sidecar.engine.activity_sweep`).

- A purge right after the end leaves no row behind. An activity's outcome is saved while
  it travels to the workflow (a background write that may wait a few ms to share a
  commit), so the workflow can finish, and its client purge it, before that write lands:
  the purge's scan missed the row, and it stayed for ever (in a soak of one-activity
  workflows purged as soon as they ended, 194 of about 2,230 purged instances kept one).
- A workflow that continues as new keeps the rows of its current generation's activities
  only: every generation's stayed until the instance was purged (an eternal monitor
  grew by one row per activity per generation)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

SWEEP_S = 0.5
CLUSTER = {"env": {"ACTORFLOW_SIDECAR_ACTIVITY_SWEEP": str(SWEEP_S)}}
CLIENTS = 8
EACH = 25


def _store_path(cluster: Any) -> str:
    return str(cluster.info["store"]["url"]).removeprefix("sqlite://")


def _rows_of(path: str, prefix: str) -> list[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [k for (k,) in db.execute("SELECT key FROM kv WHERE instr(key, ?) > 0", (prefix,))]


def test_workflows_purged_as_they_end_leave_no_rows(cluster: Any, uid: Any) -> None:
    prefix = uid("gone")

    def run(client: int) -> int:
        c = cluster.client(client % 2)
        purged = 0
        for i in range(EACH):
            iid = c.schedule_new_workflow("fan", input=2, instance_id=f"{prefix}-{client}-{i}")
            state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
            assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
            c.purge_workflow(iid)
            purged += 1
        return purged

    with ThreadPoolExecutor(CLIENTS) as pool:
        assert sum(pool.map(run, range(CLIENTS))) == CLIENTS * EACH
    path = _store_path(cluster)
    left: list[str] = []

    def nothing_left() -> bool:
        left[:] = _rows_of(path, prefix)
        return not left

    try:
        cluster.eventually("rows of purged instances are left", nothing_left, timeout_s=20)
    except AssertionError:
        raise AssertionError(f"{len(left)} rows left, e.g. {left[:3]}") from None


def test_a_workflow_that_continues_as_new_keeps_its_last_generations_rows_only(
    cluster: Any, uid: Any
) -> None:
    c = cluster.client(0)
    # Each generation outlives the sweep's check of its rows (two intervals): the rows
    # are still needed then, and go when the next generation is saved.
    looping = {"left": 3, "pause": 4 * SWEEP_S}
    iid = c.schedule_new_workflow("looping", input=looping, instance_id=uid("loop"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "0"
    activities = f"app||dapr.internal.default.app.activity||{iid}::"
    rows: list[str] = []

    def last_generation_only() -> bool:
        rows[:] = [k for k in _rows_of(_store_path(cluster), iid) if k.startswith(activities)]
        return sorted(k.removeprefix(activities) for k in rows) == [
            "1::4||activityState",
            "2::4||activityState",
        ]

    try:
        cluster.eventually("older generations' rows are left", last_generation_only, 20)
    except AssertionError:
        raise AssertionError(f"{len(rows)} activity rows: {sorted(rows)[:4]}") from None
