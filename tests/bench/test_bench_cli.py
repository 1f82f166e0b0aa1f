"""`actorflow bench` stopped with SIGTERM (a CI job's timeout, `kill`) stops the cluster
it started: no sidecar, app or Raft node is left running without it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_sigterm_stops_the_cluster_the_bench_started(tmp_path: Path) -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "actorflow", "bench", "latency", "--count", "100000",
         "--repeat", "1", "--no-ceiling", "-q"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "bench.log").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        cluster: set[int] = set()
        while time.monotonic() < deadline and bench.poll() is None:
            cluster = _descendants(bench.pid)
            if any(b"bench_app.py" in _cmdline(pid) for pid in cluster):
                break  # the cluster is up and the app connected: the run is under way
            time.sleep(0.2)  # polling /proc: nothing to wait on
        assert bench.poll() is None, (tmp_path / "bench.log").read_text()[-2000:]
        cluster = _descendants(bench.pid)
        assert any(b"sidecar" in _cmdline(pid).split(b"\0") for pid in cluster)
        os.kill(bench.pid, signal.SIGTERM)
        assert bench.wait(60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in cluster):
            time.sleep(0.2)
        left = [_cmdline(p)[:80] for p in cluster if _alive(p)]
        assert not left, f"left running: {left}"
    finally:
        if bench.poll() is None:
            bench.kill()
