"""A local placement cluster: N `python -m placement` processes on loopback ports.

Used by `actorflow up`, the tests and `actorflow bench placement`. Each node gets its own
data directory under `root`, so the same root restarts the same cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from placement.api.v1 import placement_pb2 as pb
from placement.api.v1 import placement_pb2_grpc as pb_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProc:
    node_id: str
    api: str
    raft: str
    data_dir: Path
    args: list[str]
    log_path: Path
    password: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "placement", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ACTORFLOW_RAFT_PASSWORD": self.password},
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class PlacementCluster:
    root: Path
    extra_args: list[str] = field(default_factory=list)
    size: int = 3
    password: str = "local-cluster-secret"
    # Node i uses API port base_port + 2i and Raft port base_port + 2i + 1; 0 = any free.
    base_port: int = 0
    nodes: list[NodeProc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        addrs = [self._ports(i) for i in range(self.size)]
        for i, (api, raft) in enumerate(addrs):
            peers = [f"--peer={r}={a}" for j, (a, r) in enumerate(addrs) if j != i]
            data = self.root / f"placement-{i}"
            args = [
                f"--node-id=p{i}",
                f"--api-address={api}",
                f"--raft-address={raft}",
                f"--data-dir={data}",
                *peers,
                *self.extra_args,
            ]
            log_path = self.root / f"p{i}.log"
            self.nodes.append(NodeProc(f"p{i}", api, raft, data, args, log_path, self.password))

    def _ports(self, i: int) -> tuple[str, str]:
        if self.base_port:
            return f"127.0.0.1:{self.base_port + 2 * i}", f"127.0.0.1:{self.base_port + 2 * i + 1}"
        return f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(n.api for n in self.nodes)

    def start(self) -> None:
        for n in self.nodes:
            n.start()

    def stop(self) -> None:
        for n in self.nodes:
            n.terminate()

    async def info(self, node: NodeProc, timeout: float = 1.0) -> pb.PlacementInfo | None:
        try:
            async with grpc.aio.insecure_channel(node.api) as ch:
                stub = pb_grpc.PlacementStub(ch)
                info: pb.PlacementInfo = await stub.GetPlacementInfo(
                    pb.GetPlacementInfoRequest(), timeout=timeout
                )
                return info
        except grpc.aio.AioRpcError:
            return None

    async def leader(self, timeout: float = 20.0, exclude: NodeProc | None = None) -> NodeProc:
        """The live node that reports itself leader with a quorum (polled with a deadline)."""
        async with asyncio.timeout(timeout):
            while True:
                for n in self.nodes:
                    if n is exclude or not n.alive:
                        continue
                    info = await self.info(n)
                    if info is not None and info.is_leader and info.has_quorum:
                        return n
                await asyncio.sleep(0.05)  # polling an external process with a deadline

    def logs(self) -> str:
        return "\n".join(
            f"--- {n.node_id}\n{n.log_path.read_text(errors='replace')[-4000:]}"
            for n in self.nodes
            if n.log_path.exists()
        )
