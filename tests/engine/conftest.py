"""The end-to-end harness of the engine tests: an `actorflow up` cluster and one SDK app
process (tests/engine_app.py, the real Dapr SDK) beside each sidecar.

A test module chooses its cluster with a module attribute, read by the module-scoped
`cluster` fixture: `CLUSTER = {"app_ids": ["a", "b"], "roles": {"a": "caller", ...}}`
(default: 2 sidecars of the app `app`, each with an app of role `all`, on SQLite);
`"store": "etcd"` runs it on a 3-member etcd cluster; `"tls": True` with mutual TLS
between its nodes (`actorflow up --tls`); `"env"` adds environment variables to every
process of the cluster (e.g. a sidecar setting); `"up_args"` adds options to
`actorflow up` (e.g. `--etcd-quota-bytes`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from actorflow.testing import UpCluster, free_port_block, pid_alive

APP = Path(__file__).resolve().parent.parent / "engine_app.py"


@dataclass
class Cluster:
    root: Path
    up: UpCluster
    roles: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    apps: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    again: list[subprocess.Popen[bytes]] = field(default_factory=list)  # see kill_process
    _logs: int = 0

    # ---- apps

    def start_app(self, index: int) -> subprocess.Popen[bytes]:
        sidecar = self.info["sidecars"][index]
        self._logs += 1
        log = (self.root / f"app-{index}-{self._logs}.log").open("ab")
        env = {
            **os.environ,
            "DAPR_GRPC_ENDPOINT": sidecar["grpc"],
            "PYTHONUNBUFFERED": "1",
            "ENGINE_APP_ROLE": self.roles.get(sidecar["app_id"], "all"),
        }
        env.pop("DAPR_GRPC_PORT", None)
        proc = subprocess.Popen([sys.executable, str(APP)], stdout=log, stderr=log, env=env)
        self.apps[index] = proc
        return proc

    def kill_app(self, index: int) -> None:
        proc = self.apps.pop(index)
        proc.kill()
        proc.wait(10)

    def stop_apps(self) -> None:
        procs = list(self.apps.values())
        self.apps.clear()
        _terminate(procs, grace_s=15)

    # ---- the cluster

    def start(self) -> None:
        self.info = self.up.start()
        for index in range(len(self.info["sidecars"])):
            self.start_app(index)

    def stop(self) -> None:
        self.stop_apps()
        _terminate(self.again, grace_s=20)
        self.again.clear()
        self.up.stop()

    @staticmethod
    def eventually(what: str, test: Callable[[], bool], timeout_s: float = 60) -> None:
        """Poll `test` (a metric, a log, /proc) until it holds; fail with `what` after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not test():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)  # polling, bounded by the deadline

    def kill_process(self, name: str) -> Callable[[], subprocess.Popen[bytes]]:
        """SIGKILL the cluster's process `name` (as cluster.json names its pid: `sidecar-1`,
        `reminders-0`...), wait until it is dead, and return what starts it again as it
        ran (`actorflow up` restarts nothing); what that starts stops with the cluster."""
        pid = self.info["pids"][name]
        proc = Path(f"/proc/{pid}")
        argv = [a.decode() for a in proc.joinpath("cmdline").read_bytes().split(b"\0")[:-1]]
        pairs = proc.joinpath("environ").read_bytes().decode().split("\0")
        env = dict(p.split("=", 1) for p in pairs if "=" in p)
        cwd = os.readlink(proc / "cwd")
        os.kill(pid, signal.SIGKILL)
        self.eventually(f"{name} did not die", lambda: not pid_alive(pid), timeout_s=10)

        def again() -> subprocess.Popen[bytes]:
            log = (self.root / f"{name}-again.log").open("ab")
            started = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
            self.again.append(started)
            self.info["pids"][name] = started.pid  # so that it can be killed again
            return started

        return again

    def restart(self) -> None:
        """Stop everything (SIGTERM) and start again from the same data directory."""
        self.stop()
        (self.up.data_dir / "cluster.json").unlink(missing_ok=True)
        self.start()

    def metric(self, name: str, index: int = 0) -> int:
        """One sample of sidecar `index`'s /metrics, by its full name (labels included)."""
        url = f"{self.info['sidecars'][index]['http']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        found = re.search(rf"^{re.escape(name)} (\d+)$", text, re.MULTILINE)
        assert found, text
        return int(found.group(1))

    def waiting_callers(self) -> list[int]:
        """Each sidecar's `actorflow_workflow_waiting_callers` gauge."""
        return [
            self.metric("actorflow_workflow_waiting_callers", i)
            for i in range(len(self.info["sidecars"]))
        ]

    def held_waits(self, count: int) -> list[int]:
        """The gauges once `count` waits are held in all (bounded)."""
        deadline = time.monotonic() + 30
        while True:
            held = self.waiting_callers()
            if sum(held) == count:
                return held
            assert time.monotonic() < deadline, f"waits not held: {held}"
            time.sleep(0.05)  # polling the sidecars' metrics, bounded

    def client(self, index: int = 0) -> DaprWorkflowClient:
        host, port = self.info["sidecars"][index]["grpc"].rsplit(":", 1)
        return DaprWorkflowClient(host=host, port=port)


def _terminate(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every process still running, then SIGKILL any not gone after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    # The module's CLUSTER, or a test's own through `parametrize("cluster", [...],
    # indirect=True)` (one cluster per spec).
    spec: dict[str, Any] = getattr(request, "param", None) or getattr(request.module, "CLUSTER", {})
    root = tmp_path_factory.mktemp("engine")
    args = [f"--base-grpc-port={free_port_block(4)}", f"--base-http-port={free_port_block(4)}"]
    if "app_ids" in spec:
        args.append("--app-ids=" + ",".join(spec["app_ids"]))
    else:
        args.append(f"--sidecars={spec.get('sidecars', 2)}")
    if "store" in spec:
        args.append(f"--store={spec['store']}")
    if spec.get("tls"):
        args += ["--tls", f"--base-peer-port={free_port_block(4)}"]
    args += spec.get("up_args", [])
    up = UpCluster(root / "af", args, env=dict(spec.get("env", {})))
    c = Cluster(root, up, dict(spec.get("roles", {})))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def uid() -> Any:
    return unique


@pytest.fixture
def resumes() -> Callable[[DaprWorkflowClient, str, float], None]:
    """The end of a store-outage test, once the store is back: the workflow that was in
    flight through the outage (`long_step` of `step_s`) completes with its output, and
    a new `fan` workflow runs to its result."""

    def check(client: DaprWorkflowClient, in_flight: str, step_s: float) -> None:
        state = client.wait_for_workflow_completion(in_flight, timeout_in_seconds=60)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) == step_s
        after = client.schedule_new_workflow("fan", input=5, instance_id=unique("after"))
        state = client.wait_for_workflow_completion(after, timeout_in_seconds=60)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) == sum(2 * i for i in range(5))

    return check
