"""The sidecar+app pairs that `actorflow bench scale` runs its workload on.

`Pairs` is an `actorflow up` cluster with one SDK app (`bench/bench_app.py`) beside each
sidecar and one workflow client per live sidecar; it adds and removes pairs while the
workload runs (`--live`) and reads progress from the apps' shared nap log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actorflow.testing import UpCluster, free_port_block

APP = Path(__file__).resolve().parent / "bench_app.py"
NAP_S = 0.2


def port_blocks(count: int) -> tuple[int, int]:
    """Two disjoint blocks of `count` free ports (gRPC, HTTP)."""
    while True:
        grpc, http = free_port_block(count), free_port_block(count)
        if grpc + count <= http or http + count <= grpc:
            return grpc, http


class Pairs:
    """An `actorflow up` cluster with one SDK app (bench_app.py) beside each sidecar, and
    one `DaprWorkflowClient` per live sidecar. Thread-safe: workload threads pick clients
    while the live scaler adds and removes pairs."""

    def __init__(self, root: Path, sidecars: int, spare: int) -> None:
        self.root = root
        self.nap_log = root / "naps.log"
        grpc, http = port_blocks(sidecars + spare)
        self.up = UpCluster(
            root / "af",
            [f"--sidecars={sidecars}", f"--base-grpc-port={grpc}", f"--base-http-port={http}"],
        )
        self.apps: dict[str, subprocess.Popen[bytes]] = {}
        self.app_names: dict[int, str] = {}  # pid -> "app@sidecar-N", kept after it stops
        self.clients: dict[str, Any] = {}  # sidecar name -> client, live sidecars only
        self.stopping = threading.Event()
        self.threads = (os.cpu_count() or 1) + 4  # the SDK's default activity thread pool
        self._lock = threading.Lock()

    # ---- apps and clients

    def _start_app(self, sidecar: dict[str, Any]) -> None:
        env = {**os.environ, "DAPR_GRPC_ENDPOINT": sidecar["grpc"], "PYTHONUNBUFFERED": "1",
               "BENCH_NAP_LOG": str(self.nap_log)}  # fmt: skip
        env.pop("DAPR_GRPC_PORT", None)
        log = (self.root / f"app-{sidecar['name']}.log").open("ab")
        app = subprocess.Popen([sys.executable, str(APP)], stdout=log, stderr=log, env=env)
        self.apps[sidecar["name"]] = app
        self.app_names[app.pid] = f"app@{sidecar['name']}"

    def _wait_app_ready(self, name: str, timeout_s: float = 60.0) -> None:
        log = self.root / f"app-{name}.log"
        deadline = time.monotonic() + timeout_s
        while "APP READY" not in log.read_text(errors="replace"):
            if self.apps[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app beside {name} not ready: {log.read_text()[-2000:]}")
            self.stopping.wait(0.1)  # polling another process's output file, bounded

    def _connect(self, sidecar: dict[str, Any]) -> None:
        from dapr.ext.workflow import DaprWorkflowClient
        from dapr.ext.workflow.logger import LoggerOptions

        host, port = sidecar["grpc"].rsplit(":", 1)
        client = DaprWorkflowClient(host, port, LoggerOptions(log_level=logging.WARNING))
        with self._lock:
            self.clients[sidecar["name"]] = client

    def client(self, i: int) -> Any:
        with self._lock:
            names = list(self.clients)
            return self.clients[names[i % len(names)]]

    def names(self) -> list[str]:
        with self._lock:
            return list(self.clients)

    # ---- the cluster

    def start(self) -> None:
        info = self.up.start()
        for sidecar in info["sidecars"]:
            self._start_app(sidecar)
        for sidecar in info["sidecars"]:
            self._wait_app_ready(sidecar["name"])
            self._connect(sidecar)

    def add(self) -> str:
        reply = asyncio.run(self.up.scale("--add"))
        if not reply.get("ok"):
            raise RuntimeError(f"actorflow scale --add: {reply}")
        name = str(reply["added"])
        sidecar = next(s for s in self.up.cluster()["sidecars"] if s["name"] == name)
        self._start_app(sidecar)
        self._wait_app_ready(name)
        self._connect(sidecar)
        return name

    def remove(self, name: str) -> None:
        """Clients first (their waits move to other sidecars), then the sidecar (a
        graceful leave), then its app."""
        with self._lock:
            client = self.clients.pop(name)
        client.close()
        reply = asyncio.run(self.up.scale("--remove", name))
        if not reply.get("ok"):
            raise RuntimeError(f"actorflow scale --remove {name}: {reply}")
        self._stop_app(name)

    def _stop_app(self, name: str) -> None:
        app = self.apps.pop(name)
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(10)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for client in clients:
            client.close()
        for name in list(self.apps):
            self._stop_app(name)
        self.up.stop()

    # ---- progress, from the apps' nap log

    def naps_done(self) -> int:
        try:
            return self.nap_log.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def wait_naps(self, count: int, deadline: float) -> None:
        while self.naps_done() < count and time.monotonic() < deadline:
            self.stopping.wait(0.2)  # polling the apps' shared output file, bounded


@contextmanager
def running_pairs(root: Path, sidecars: int, spare: int) -> Iterator[Pairs]:
    root.mkdir(parents=True)
    pairs = Pairs(root, sidecars, spare)
    try:
        pairs.start()
        yield pairs
    finally:
        pairs.stop()
