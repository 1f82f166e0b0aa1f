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

from actorflow.testing import UpCluster, free_port_block, pid_alive

pytestmark = pytest.mark.slow


def test_children_stop_when_up_is_killed(tmp_path: Path) -> None:
    up = UpCluster(
        tmp_path / "af",
        ["--sidecars=1", f"--base-grpc-port={free_port_block(2)}",
         f"--base-http-port={free_port_block(2)}"],
    )  # fmt: skip
    info = up.start()
    children = list(info["pids"].values())
    assert len(children) == 7 and all(pid_alive(pid) for pid in children)
    try:
        assert up.proc is not None
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(10)
        deadline = time.monotonic() + 60
        while any(pid_alive(pid) for pid in children):
            assert time.monotonic() < deadline, [p for p in children if pid_alive(p)]
            time.sleep(0.1)  # polling the children's state, bounded
    finally:
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    # The directory is free again: a new `up` starts on it and recovers.
    again = UpCluster(tmp_path / "af", up.args)
    try:
        assert again.start()["sidecars"]
    finally:
        again.stop()
