"""The workflow engine end to end: `actorflow up` with 2 sidecars, one app process (the
real Dapr SDK, unchanged) beside each, clients through the SDK's DaprWorkflowClient."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from actorflow.testing import UpCluster, free_port_block

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent.parent / "engine_app.py"


class Apps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, grpc: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"app-{len(self.procs)}.log").open("ab")
        env = {**os.environ, "DAPR_GRPC_ENDPOINT": grpc, "PYTHONUNBUFFERED": "1"}
        env.pop("DAPR_GRPC_PORT", None)
        proc = subprocess.Popen([sys.executable, str(APP)], stdout=log, stderr=log, env=env)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("engine")
    up = UpCluster(
        root / "af",
        ["--sidecars=2", f"--base-grpc-port={free_port_block(4)}",
         f"--base-http-port={free_port_block(4)}"],
    )  # fmt: skip
    apps = Apps(root)
    try:
        info = up.start()
        for s in info["sidecars"]:
            apps.start(s["grpc"])
        yield {"info": info, "up": up, "apps": apps}
    finally:
        apps.stop()
        up.stop()


def client(cluster: dict[str, Any], index: int = 0) -> DaprWorkflowClient:
    host, port = cluster["info"]["sidecars"][index]["grpc"].rsplit(":", 1)
    return DaprWorkflowClient(host=host, port=port)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def test_fan_out_and_in(cluster: dict[str, Any]) -> None:
    c = client(cluster)
    iid = c.schedule_new_workflow("fan", input=100, instance_id=unique("fan"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(100))


def test_durable_timer_then_external_event_and_custom_status(cluster: dict[str, Any]) -> None:
    c = client(cluster, 1)
    iid = c.schedule_new_workflow("timer_then_event", input=0.3, instance_id=unique("tt"))
    deadline = time.monotonic() + 30
    while True:
        state = c.get_workflow_state(iid)
        if state is not None and state.serialized_custom_status:
            break
        assert time.monotonic() < deadline, "the timer never fired"
        time.sleep(0.05)  # polling the workflow's status through the API
    assert state.serialized_custom_status == "waiting for go"  # str: stored as given
    c.raise_workflow_event(iid, "go", data={"ok": 1})
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"got": {"ok": 1}}


def test_activity_failure_surfaces_with_details(cluster: dict[str, Any]) -> None:
    c = client(cluster)
    iid = c.schedule_new_workflow("fails", input="boom 42", instance_id=unique("fails"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert "boom 42" in state.failure_details.message


def test_suspend_resume_terminate_purge(cluster: dict[str, Any]) -> None:
    c = client(cluster)
    iid = c.schedule_new_workflow("waits", input=None, instance_id=unique("waits"))
    c.wait_for_workflow_start(iid, timeout_in_seconds=30)
    c.pause_workflow(iid)
    c.raise_workflow_event(iid, "release", data="held")
    state = c.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED
    c.resume_workflow(iid)
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "held"

    other = c.schedule_new_workflow("waits", input=None, instance_id=unique("term"))
    c.wait_for_workflow_start(other, timeout_in_seconds=30)
    c.terminate_workflow(other, output="stopped")
    state = c.wait_for_workflow_completion(other, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    assert c.purge_workflow(other) is None or True
    assert c.get_workflow_state(other) is None


def test_sidecar_sigkill_during_a_1000_activity_fan_out(cluster: dict[str, Any]) -> None:
    info = cluster["info"]
    c = client(cluster, 0)
    iid = c.schedule_new_workflow("fan", input=1000, instance_id=unique("kill"))
    time.sleep(0.5)  # let the fan-out get going: the kill must land mid-run
    victim = info["sidecars"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(1000))
