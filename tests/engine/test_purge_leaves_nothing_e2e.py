"""A purge right after the end leaves no row behind. An activity's outcome is saved while
it travels to the workflow (a background write that may wait a few ms to share a
commit), so the workflow can finish, and its client purge it, before that write lands:
the purge's scan missed the row, and it stayed for ever (in a soak of one-activity
workflows purged as soon as they ended, 194 of about 2,230 purged instances kept one).
The sidecar's activity sweep now deletes such rows once they land."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"env": {"ACTORFLOW_SIDECAR_ACTIVITY_SWEEP": "0.5"}}
CLIENTS = 8
EACH = 25


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
    path = cluster.info["store"]["url"].removeprefix("sqlite://")
    left: list[str] = []

    def nothing_left() -> bool:
        left[:] = _rows_of(path, prefix)
        return not left

    try:
        cluster.eventually("rows of purged instances are left", nothing_left, timeout_s=20)
    except AssertionError:
        raise AssertionError(f"{len(left)} rows left, e.g. {left[:3]}") from None
