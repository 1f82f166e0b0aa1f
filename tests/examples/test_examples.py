"""Every example of examples/ runs to its expected result on a 2-sidecar cluster, with
one replica of the example app beside each sidecar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorflow.testing import UpCluster, free_port_block

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples.run import run_all  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("examples")
    up = UpCluster(
        root / "af",
        ["--sidecars=2", f"--base-grpc-port={free_port_block(4)}",
         f"--base-http-port={free_port_block(4)}"],
    )  # fmt: skip
    apps: list[subprocess.Popen[bytes]] = []
    try:
        info = up.start()
        for s in info["sidecars"]:
            env = {**os.environ, "DAPR_GRPC_ENDPOINT": s["grpc"],
                   "EXAMPLES_DATA": str(root / "bank.db")}  # fmt: skip
            log = (root / f"app-{len(apps)}.log").open("ab")
            apps.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "examples" / "workflows.py")],
                    stdout=log,
                    stderr=log,
                    env=env,
                )
            )
        yield info
    finally:
        for p in apps:
            p.send_signal(signal.SIGTERM)
        for p in apps:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        up.stop()


def test_every_example_reaches_its_expected_result(cluster: dict[str, Any]) -> None:
    outcomes = run_all(cluster["sidecars"][0]["grpc"])
    report = "\n".join(f"{o.name}: {o.status} {o.story}" for o in outcomes)
    assert [o.name for o in outcomes] == [
        "bank_transfer", "phone_verification", "fan_out_fan_in", "tree", "monitor",
    ], report  # fmt: skip
    assert all(o.ok for o in outcomes), report
