"""Multi-process harness: raftkit nodes as separate `node_proc.py` processes on ephemeral
loopback ports, each with its own data directory. Used by the tests and bench_raft.py.

Every wait is on an answer from a node (which itself waits on Raft status changes), with
a timeout; nothing sleeps to let time pass.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

NODE_SCRIPT = Path(__file__).with_name("node_proc.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = REPO_ROOT / ".venv" / "bin" / "python"

# Set by `exploited(name)`: a pickle payload calls it if a node unpickles it.
EXPLOITED: dict[str, threading.Event] = {}


def exploited(name: str) -> None:
    EXPLOITED.setdefault(name, threading.Event()).set()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NodeError(RuntimeError):
    pass


class Pending:
    def __init__(self, node: NodeProcess, rid: int, slot: queue.Queue[dict[str, Any]]) -> None:
        self._node = node
        self._rid = rid
        self._slot = slot

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self._slot.get(timeout=timeout)
        except queue.Empty:
            raise NodeError(f"{self._node.name}: no answer within {timeout}s") from None
        finally:
            self._node._slots.pop(self._rid, None)
        if not reply.get("ok"):
            raise NodeError(f"{self._node.name}: {reply.get('error')}: {reply.get('message')}")
        return reply


class NodeProcess:
    def __init__(self, name: str, config: dict[str, Any], log_dir: Path, sync: str) -> None:
        self.name = name
        self.config = config
        self.address: str = config["self_address"]
        self._log_path = log_dir / f"{name}.log"
        self._sync = sync
        self._proc: subprocess.Popen[str] | None = None
        self._slots: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._started: queue.Queue[dict[str, Any]] = queue.Queue()
        self._write_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        assert not self.alive, f"{self.name} already running"
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        python = str(PYTHON) if PYTHON.exists() else sys.executable
        with open(self._log_path, "a") as log:
            self._proc = subprocess.Popen(
                [
                    python,
                    str(NODE_SCRIPT),
                    "--config",
                    json.dumps(self.config),
                    "--sync",
                    self._sync,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO_ROOT,
                env=env,
            )
        assert self._proc.stdout is not None
        threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True).start()
        try:
            self._started.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise NodeError(f"{self.name} did not start; see {self._log_path}") from None

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            message = json.loads(line)
            if message.get("event") == "started":
                self._started.put(message)
                continue
            slot = self._slots.get(message["id"])
            if slot is not None:
                slot.put(message)

    def send(self, op: str, **args: Any) -> Pending:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise NodeError(f"{self.name} is not running")
        rid = next(self._ids)
        slot: queue.Queue[dict[str, Any]] = queue.Queue()
        self._slots[rid] = slot
        with self._write_lock:
            proc.stdin.write(json.dumps({"id": rid, "op": op, **args}) + "\n")
            proc.stdin.flush()
        return Pending(self, rid, slot)

    def request(self, op: str, *, timeout: float, **args: Any) -> dict[str, Any]:
        if "timeout" in _TIMED_OPS.get(op, ()):
            args["timeout"] = timeout
        return self.send(op, **args).result(timeout + 5.0)

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._close_pipes()

    def stop(self, timeout: float = 10.0) -> None:
        """Clean stop: closing stdin makes the node close itself."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        proc = self._proc
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()


_TIMED_OPS = {
    "wait_leader": ("timeout",),
    "wait_count": ("timeout",),
    "propose": ("timeout",),
}


class Cluster:
    """`size` nodes on loopback. `overrides` go into every node's RaftConfig mapping."""

    def __init__(
        self, base_dir: Path, size: int = 3, *, sync: str = "fdatasync", **overrides: Any
    ) -> None:
        ports = free_ports(size)
        addresses = [f"127.0.0.1:{p}" for p in ports]
        log_dir = base_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: list[NodeProcess] = []
        for i, address in enumerate(addresses):
            config = {
                "self_address": address,
                "partners": [a for a in addresses if a != address],
                "data_dir": str(base_dir / f"node{i}"),
                "password": "raftkit-test-secret",
                "security": "hmac",
                **overrides,
            }
            self.nodes.append(NodeProcess(f"node{i}", config, log_dir, sync))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.kill()

    def start_all(self) -> None:
        for node in self.nodes:
            node.start()

    def by_address(self, address: str) -> NodeProcess:
        return next(n for n in self.nodes if n.address == address)

    def live(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.alive]

    def wait_leader(
        self, *, timeout: float = 20.0, min_term: int = 0, exclude: tuple[str, ...] = ()
    ) -> tuple[NodeProcess, int]:
        """Wait until every live node names the same leader (not in `exclude`) in the same
        term >= min_term; a disagreement (an election still settling) waits again."""
        floor = min_term
        for _ in range(10):
            pending = [
                n.send("wait_leader", timeout=timeout, min_term=floor, exclude=list(exclude))
                for n in self.live()
            ]
            answers = [p.result(timeout + 5.0) for p in pending]
            views = {(a["leader"], a["term"]) for a in answers}
            if len(views) == 1:
                leader, term = views.pop()
                return self.by_address(leader), term
            floor = max(a["term"] for a in answers)
        raise NodeError(f"no agreement on a leader: {answers}")

    def wait_count(self, nodes: list[NodeProcess], count: int, timeout: float = 20.0) -> None:
        pending = [n.send("wait_count", count=count, timeout=timeout) for n in nodes]
        for p in pending:
            p.result(timeout + 5.0)
