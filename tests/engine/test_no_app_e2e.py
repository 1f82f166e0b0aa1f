"""A sidecar with no app connected: its work waits, it says so, and it runs once an app
connects.

Each sidecar runs its share of the workflows on the app connected to it. Started without
one, the sidecar looks healthy while that share stands still; the operator is told by a
warning in its log (after `--app-wait-warn`) and by `actorflow status`. A real cluster
(`actorflow up`, one sidecar, SQLite), a start over HTTP, then the real Dapr SDK app.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actorflow.testing import UpCluster, free_port_block

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent.parent / "engine_app.py"
WARNING = "no app is connected to this sidecar to run them"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpCluster]:
    cluster = UpCluster(
        tmp_path / "af",
        ["--sidecars=1", f"--base-grpc-port={free_port_block(2)}",
         f"--base-http-port={free_port_block(2)}"],
        env={"ACTORFLOW_SIDECAR_APP_WAIT_WARN": "0.5"},
    )  # fmt: skip
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _status(up: UpCluster) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "status", f"--cluster={up.data_dir / 'cluster.json'}",
         "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sidecar: dict[str, Any] = json.loads(done.stdout)["sidecars"][0]
    return sidecar


async def _wait_for(what: str, test: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not test():
        assert time.monotonic() < deadline, f"not seen in {timeout_s}s: {what}"
        await asyncio.sleep(0.1)  # polling another process's log or state, bounded


@pytest.mark.timeout(180)
async def test_work_waits_for_an_app_and_the_sidecar_says_so(up: UpCluster, tmp_path: Path) -> None:
    info = up.cluster()
    sidecar = info["sidecars"][0]
    log = up.data_dir / "logs" / f"{sidecar['name']}.log"
    iid = f"no-app-{time.time_ns()}"
    async with aiohttp.ClientSession(base_url=sidecar["http"]) as http:
        async with http.post(f"/v1.0/workflows/fan/{iid}/start", data="4") as resp:
            assert resp.status == 202, await resp.text()

        await _wait_for("the warning", lambda: WARNING in log.read_text(errors="replace"))
        line = next(x for x in log.read_text().splitlines() if WARNING in x)
        assert "1 workflow turn(s) and 0 activity(ies)" in line, line
        assert f"DAPR_GRPC_ENDPOINT={sidecar['grpc']}" in line, line
        seen = _status(up)
        assert (seen["apps"], seen["queued_turns"], seen["queued_activities"]) == (0, 1, 0)
        async with http.get(f"/v1.0/workflows/fan/{iid}") as resp:
            assert (await resp.json())["runtimeStatus"] == "PENDING"

        env = {**os.environ, "DAPR_GRPC_ENDPOINT": sidecar["grpc"], "PYTHONUNBUFFERED": "1"}
        with (tmp_path / "app.log").open("ab") as app_log:
            app = subprocess.Popen(
                [sys.executable, str(APP)], stdout=app_log, stderr=app_log, env=env
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                async with http.get(f"/v1.0/workflows/fan/{iid}") as resp:
                    body = await resp.json()
                if body["runtimeStatus"] == "COMPLETED":
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.1)  # polling the status route, as a client would
            assert body["output"] == 0 + 2 + 4 + 6
            await _wait_for(
                "the end of the wait", lambda: "an app connected" in log.read_text(errors="replace")
            )
            seen = _status(up)
            assert (seen["apps"], seen["queued_turns"], seen["queued_activities"]) == (1, 0, 0)
        finally:
            app.terminate()
            app.wait(15)
