"""Run `actorflow up` as a subprocess (tests, benches) and read its cluster.json."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PORT_BLOCK_LOW = 10_000  # blocks from free_port_block start at or above this port


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are free right now, chosen below the
    kernel's range for outgoing connections: a block is often bound long after it was
    chosen (`actorflow up --add` binds the next sidecar's port), and a port in that
    range can be taken meanwhile by any connection the machine opens."""
    high = _ephemeral_low() - count
    if high > PORT_BLOCK_LOW:
        for _ in range(500):
            base = random.randrange(PORT_BLOCK_LOW, high)
            if all(_free(p) for p in range(base, base + count)):
                return base
    for _ in range(200):  # no room below that range: any block free right now
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count < 65000 and all(_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no free port block")


@dataclass
class UpCluster:
    data_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # extra environment for every process

    def start(self, timeout_s: float = 90.0) -> dict[str, Any]:
        log = (self.data_dir.parent / f"{self.data_dir.name}-up.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actorflow", "up", f"--data-dir={self.data_dir}", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})},
        )
        return self.wait_cluster_json(timeout_s)

    def wait_cluster_json(self, timeout_s: float) -> dict[str, Any]:
        path = self.data_dir / "cluster.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists():
                return dict(json.loads(path.read_text()))
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"actorflow up exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.1)  # polling another process's output file, bounded
        raise TimeoutError(f"no cluster.json after {timeout_s}s: {self.log()}")

    def cluster(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "cluster.json").read_text()))

    def log(self) -> str:
        path = self.data_dir.parent / f"{self.data_dir.name}-up.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    async def scale(self, *args: str) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "actorflow",
            "scale",
            f"--data-dir={self.data_dir}",
            *args,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        return dict(json.loads(out.decode().strip().splitlines()[-1]))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
