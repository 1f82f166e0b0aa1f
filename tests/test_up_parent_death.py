"""`actorflow up` killed outright takes its cluster with it: every child gets SIGTERM
from the kernel (the parent-death signal) and stops as it would on a normal stop. Before,
a SIGKILLed `up` left all eight processes running, holding their ports, and the next
`up` on the same directory could not start."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from actorflow.testing import UpCluster, free_port_block

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent, `up`, is dead and init reaps it).
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def test_children_stop_when_up_is_killed(tmp_path: Path) -> None:
    up = UpCluster(
        tmp_path / "af",
        ["--sidecars=1", f"--base-grpc-port={free_port_block(2)}",
         f"--base-http-port={free_port_block(2)}"],
    )  # fmt: skip
    info = up.start()
    children = list(info["pids"].values())
    assert len(children) == 7 and all(_alive(pid) for pid in children)
    try:
        assert up.proc is not None
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(10)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, [p for p in children if _alive(p)]
            time.sleep(0.1)  # polling the children's state, bounded
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    # The directory is free again: a new `up` starts on it and recovers.
    again = UpCluster(tmp_path / "af", up.args)
    try:
        assert again.start()["sidecars"]
    finally:
        again.stop()
