"""`LocalCluster`: real `python -m reminders` processes on ephemeral loopback ports; and
for tests of the firing loop on its own, `FakeClock`, `LeadingRaft` and `replica_due`.

Shipped in the package (as `temporalio.testing` is) because the tests and
`bench/reminders_bench.py` both drive it. Each node has its own data directory under
`base_dir` and its stderr in `base_dir/<node>.log`; starting waits for the node's
`READY` line, and `wait_leader` polls GetRemindersInfo with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from raftkit.codec import Command
from raftkit.errors import LeadershipLostError
from raftkit.node import Entry, Fence
from reminders.api.v1 import reminders_pb2 as pb
from reminders.machine import Key, create_item
from reminders.names import SERVICE
from reminders.replica import Replica
from reminders.schedule import plan

__all__ = [
    "FakeClock",
    "LeadingRaft",
    "LocalCluster",
    "NodeProcess",
    "free_ports",
    "replica_due",
]

DEFAULT_PASSWORD = "actorflow-test-raft-secret"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(eq=False)
class NodeProcess:
    name: str
    api: str
    raft: str
    data_dir: Path
    args: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 30.0) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.env,
            )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"{self.name} exited before READY: {self.tail()}")
                    if line.startswith(b"READY"):
                        return
        except TimeoutError:
            raise RuntimeError(f"{self.name} not READY in {timeout_s}s: {self.tail()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()

    async def wait_dead(self) -> None:
        if self.proc is not None:
            await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        *,
        password: str = DEFAULT_PASSWORD,
        extra_args: list[str] | None = None,
        python: str = sys.executable,
    ) -> None:
        ports = free_ports(2 * size)
        apis = [f"127.0.0.1:{p}" for p in ports[:size]]
        rafts = [f"127.0.0.1:{p}" for p in ports[size:]]
        env = {**os.environ, "ACTORFLOW_RAFT_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
        self.nodes: list[NodeProcess] = []
        for i in range(size):
            args = [
                python, "-m", "reminders",
                "--node-id", f"r{i}",
                "--api-address", apis[i],
                "--raft-address", rafts[i],
                "--data-dir", str(base_dir / f"r{i}"),
                *(a for j in range(size) if j != i for a in ("--peer", f"{rafts[j]}={apis[j]}")),
                *(extra_args or []),
            ]  # fmt: skip
            self.nodes.append(
                NodeProcess(f"r{i}", apis[i], rafts[i], base_dir / f"r{i}", args, env)
            )
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def addresses(self) -> list[str]:
        return [n.api for n in self.nodes]

    def live(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.alive]

    async def start(self, nodes: list[NodeProcess] | None = None) -> None:
        await asyncio.gather(*(n.start() for n in (nodes or self.nodes)))

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes))
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    def kill_all(self) -> None:
        for n in self.nodes:
            n.kill()

    async def info(self, node: NodeProcess, timeout_s: float = 1.0) -> pb.RemindersInfo | None:
        channel = self._channels.get(node.api)
        if channel is None:
            channel = self._channels[node.api] = grpc.aio.insecure_channel(node.api)
        method = channel.unary_unary(
            f"/{SERVICE}/GetRemindersInfo",
            request_serializer=pb.GetRemindersInfoRequest.SerializeToString,
            response_deserializer=pb.RemindersInfo.FromString,
        )
        try:
            reply: pb.RemindersInfo = await method(pb.GetRemindersInfoRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return None
        return reply

    async def wait_leader(
        self, timeout_s: float = 20.0, exclude: tuple[NodeProcess, ...] = ()
    ) -> NodeProcess:
        """A live node that reports leading with a quorum."""
        async with asyncio.timeout(timeout_s):
            while True:
                for node in self.live():
                    if node in exclude:
                        continue
                    info = await self.info(node)
                    if info is not None and info.is_leader and info.has_quorum:
                        return node
                await asyncio.sleep(0.05)  # polling pace of a status endpoint

    async def wait_info(
        self,
        node: NodeProcess,
        predicate: Callable[[pb.RemindersInfo], bool],
        timeout_s: float = 20.0,
    ) -> pb.RemindersInfo:
        """Poll `node` until `predicate(info)` holds."""
        check = predicate
        async with asyncio.timeout(timeout_s):
            while True:
                info = await self.info(node)
                if info is not None and check(info):
                    return info
                await asyncio.sleep(0.05)  # polling pace of a status endpoint

    async def __aenter__(self) -> LocalCluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()


class FakeClock:
    """The firing loop's clock, moved by hand: wall time in ms; monotonic follows it."""

    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    def wall_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


class LeadingRaft:
    """Stands in for `RaftNode` in tests of the firing loop: leads `term`, with a quorum
    while `quorum` is set (the fence fails without one, as `RaftNode.ensure_leader`
    does); proposals succeed without replicating anything."""

    def __init__(self, term: int, address: str = "127.0.0.1:7201") -> None:
        self.term = term
        self.address = address
        self.quorum = True
        self.is_leader = True

    def fence(self, term: int) -> Fence:
        if not (self.is_leader and self.term == term):
            return Fence.LOST
        return Fence.HOLDS if self.quorum else Fence.GAP

    def ensure_leader(self, term: int) -> None:
        if self.fence(term) is not Fence.HOLDS:
            raise LeadershipLostError(term, self.term, self.address)

    def leader_term(self) -> int | None:
        return self.term if self.quorum and self.is_leader else None

    async def propose(self, command: Command, *, timeout: float) -> object:
        return None


def replica_due(due_in_ms: dict[Key, int], now_ms: int, term: int) -> Replica:
    """A replica holding one one-shot reminder per key, due `due_in_ms[key]` ms after
    `now_ms`, created by one command of `term`."""
    replica = Replica()
    items = []
    for key, ms in due_in_ms.items():
        schedule = plan(f"{ms}ms", "", "", now_ms)
        items.append(create_item(key, due_time=f"{ms}ms", period="", ttl="", data=b"",
                                 schedule=schedule))  # fmt: skip
    replica.apply(Command("create", {"now_ms": now_ms, "items": items}), Entry(1, term))
    return replica
