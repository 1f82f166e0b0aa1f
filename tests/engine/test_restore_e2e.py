"""Restoring backups taken at different moments (deploy/README.md, "Backing up the
data"): the reminders service's copy is older than the workflow state's, so a timer a
workflow armed between the two copies is not in the restored reminders. The guide's
procedure, followed as written: a reminders node stopped, its data directory copied,
started again; the SQLite store copied online with sqlite's backup API; later the
whole cluster stopped, every reminders node given the copy, the store file replaced by
its copy, the cluster started. The sidecars wake the running workflows they own and arm
their timers again from the store, so the workflow completes, and not early."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow.status import collect
from reminders.client import RemindersClient
from sidecar.engine.naming import workflow_type

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1}
TIMER_S = 5.0


def _armed(addresses: list[str], instance_id: str) -> bool:
    """Whether the reminders service holds a reminder of workflow `instance_id`."""

    async def ask() -> bool:
        async with RemindersClient(addresses) as client:
            found = client.list_all("default", "app", workflow_type("default", "app"), instance_id)
            return any([r async for r in found])

    return asyncio.run(ask())


def _copy_online(db: Path, to: Path) -> None:
    """The store's copy as the guide takes it: sqlite's backup API on the live file."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def test_a_timer_armed_after_the_reminders_copy_fires_after_a_restore(
    cluster: Any, uid: Any, tmp_path: Path
) -> None:
    data = cluster.up.data_dir
    reminders = data / "reminders"
    nodes = sorted(p.name for p in reminders.iterdir())
    assert nodes == ["r0", "r1", "r2"]

    # The reminders copy: one node stopped (the other two keep serving), copied, started.
    again = cluster.kill_process("reminders-1")
    shutil.copytree(reminders / "r1", tmp_path / "reminders-copy")
    again()

    # A workflow whose timer is armed after that copy, then the store's copy.
    c = cluster.client()
    iid = c.schedule_new_workflow("timed", input=TIMER_S, instance_id=uid("restore"))
    addresses = cluster.info["reminders"]
    cluster.eventually("the timer was never armed", lambda: _armed(addresses, iid), 30)
    _copy_online(data / "state.db", tmp_path / "state-copy.db")

    # Restore: everything stopped, each node given the same copy, the store replaced.
    cluster.stop()
    for node in nodes:
        shutil.rmtree(reminders / node)
        shutil.copytree(tmp_path / "reminders-copy", reminders / node)
    for leftover in data.glob("state.db*"):
        leftover.unlink()
    shutil.copyfile(tmp_path / "state-copy.db", data / "state.db")
    (data / "cluster.json").unlink(missing_ok=True)
    cluster.start()

    c = cluster.client()
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None, "the instance was lost in the restore"
    assert state.runtime_status == WorkflowStatus.COMPLETED, state.failure_details
    assert json.loads(state.serialized_output) >= TIMER_S  # never early


def _leader(cluster: Any, service: str) -> tuple[str, int]:
    """The process name and term of `service`'s leader with a quorum; ("", 0) if none."""
    report = asyncio.run(
        collect(cluster.info["placement"], cluster.info["reminders"], [], timeout_s=1.0)
    )
    for i, node in enumerate(report[service]):
        if node["ok"] and node["leader"] and node["quorum"]:
            return f"{service}-{i}", int(node["term"])
    return "", 0


def _raise_term(cluster: Any, service: str, elections: int) -> int:
    """Kill `service`'s leader `elections` times (each started again), so that the term
    the sidecars know is well above where an empty group starts; the term reached."""
    for _ in range(elections):
        cluster.eventually("no leader", lambda: _leader(cluster, service)[0] != "", 30)
        name, term = _leader(cluster, service)
        cluster.kill_process(name)()
        _wait_term_above(cluster, service, term)
    return _leader(cluster, service)[1]


def _wait_term_above(cluster: Any, service: str, term: int) -> None:
    cluster.eventually("no new leader", lambda: _leader(cluster, service)[1] > term, 30)


@pytest.mark.parametrize("service", ["placement", "reminders"])
def test_a_group_started_empty_under_running_sidecars_is_followed(
    cluster: Any, uid: Any, service: str
) -> None:
    """A placement or reminders group whose data is lost and started again empty, the
    sidecars running all along: the group leads at a term below the one the sidecars
    saw, which their term fencing refused for good (the table locked, or no timer ever
    firing again). They follow it after `REGRESSION_GRACE_S`; a timer that came due
    while the reminders were gone, lost with their data, is armed again from the store."""
    c = cluster.client()
    seen = c.schedule_new_workflow("timed", input=0.2, instance_id=uid(f"{service}-seen"))
    known = _raise_term(cluster, service, elections=3)
    # A timer through the reminders at the raised term: the sidecar knows that term.
    done = c.wait_for_workflow_completion(seen, timeout_in_seconds=60)
    assert done is not None and done.runtime_status == WorkflowStatus.COMPLETED
    pending = c.schedule_new_workflow("timed", input=TIMER_S, instance_id=uid(service))
    cluster.eventually(
        "the timer was never armed",
        lambda: _armed(cluster.info["reminders"], pending),
        timeout_s=30,
    )
    nodes = [name for name in cluster.info["pids"] if name.startswith(service)]
    restarts = [cluster.kill_process(name) for name in nodes]
    for node in (cluster.up.data_dir / service).iterdir():
        shutil.rmtree(node)
        node.mkdir()
    for again in restarts:
        again()
    cluster.eventually(
        "the empty group elected no leader", lambda: _leader(cluster, service)[0] != "", 30
    )
    assert _leader(cluster, service)[1] < known, "the empty group's term is not below"

    after = c.schedule_new_workflow("timed", input=0.2, instance_id=uid(f"{service}-after"))
    for iid, at_least in ((after, 0.2), (pending, TIMER_S)):
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, iid
        assert json.loads(state.serialized_output) >= at_least
    log = (cluster.up.data_dir / "logs" / "sidecar-0.log").read_text(errors="replace")
    assert f"{service} went back to term" in log
