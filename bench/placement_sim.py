"""Simulated sidecars for `actorflow bench placement`, run as their own process.

`python -m bench.placement_sim --addresses A,B,C --hosts N --changes K --out FILE`
opens N host streams to the placement leader (a few HTTP/2 connections shared by all),
acknowledges every step at once, and then makes K membership changes (one extra host
joins, then leaves, and so on). For each change it records the time from the change until
every host holds UNLOCK for a table version that includes it, and the bytes all hosts
received for that round. Results go to FILE as JSON.

Orders arrive as raw bytes; only their first three fields (operation, version, term,
which protobuf writes first and in order) are decoded by hand, since parsing a 1000-host
table 1000 times would measure this simulator rather than placement. One observer host
parses tables fully to learn which version contains which hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from placement.api.v1 import placement_pb2 as pb

PATH = "/actorflow.placement.v1.Placement/ReportHost"
STREAM_LOST = 3  # exit status: placement ended a host's stream, the run is void
STREAMS_PER_CHANNEL = 250


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def order_header(data: bytes) -> tuple[int, int, int]:
    """(operation, version, term) from a serialized PlacementOrder, zeros when absent."""
    values = {1: 0, 2: 0, 3: 0}
    pos = 0
    while pos < len(data):
        tag, pos = read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number not in values or wire != 0:
            break
        values[number], pos = read_varint(data, pos)
    return values[1], values[2], values[3]


@dataclass
class Tracker:
    """Shared by every simulated host: when each host got UNLOCK of each version."""

    unlocks: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    bytes_by_version: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    members: dict[int, frozenset[str]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Why a host's stream was ended by placement (a new leader, say): the measurement
    # is void then, since these hosts do not reconnect as sidecars do.
    lost: str | None = None

    def record(self, host: str, data: bytes, now: float) -> tuple[int, int, int]:
        op, version, term = order_header(data)
        self.bytes_by_version[version] += len(data)
        if op == pb.OPERATION_UNLOCK:
            self.unlocks[version][host] = now
            self.changed.set()
        return op, version, term

    def all_unlocked(
        self, hosts: set[str], absent: str | None = None, newer_than: int = 0
    ) -> float | None:
        """Latest unlock time of the newest version after `newer_than` whose table lists
        all of `hosts` (and not `absent`) and that every one of them unlocked; None when
        not there yet."""
        for version in sorted(self.unlocks, reverse=True):
            if version <= newer_than:
                break
            members = self.members.get(version)
            if members is None or not hosts <= members or absent in members:
                continue
            got = self.unlocks[version]
            if hosts <= got.keys():
                return max(got[h] for h in hosts)
        return None


class SimHost:
    def __init__(
        self, name: str, channel: grpc.aio.Channel, tracker: Tracker, observer: bool
    ) -> None:
        self.name = name
        self.tracker = tracker
        self.observer = observer
        self.call: Any = channel.stream_stream(
            PATH, request_serializer=pb.HostReport.SerializeToString, response_deserializer=None
        )()
        self.task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()  # grpc allows one outstanding write per call

    async def write(self, report: pb.HostReport) -> None:
        async with self._write_lock:
            await self.call.write(report)

    def status(self) -> pb.HostReport:
        return pb.HostReport(
            status=pb.Host(
                name=self.name,
                address=f"{self.name}.sim.invalid:3500",
                app_id="sim",
                namespace="default",
                actor_types=[
                    "dapr.internal.default.sim.workflow",
                    "dapr.internal.default.sim.activity",
                ],
                api_level=1,
            )
        )

    async def start(self) -> None:
        await self.write(self.status())
        self.task = asyncio.create_task(self._run())

    async def leave(self) -> None:
        await self.write(pb.HostReport(leave=pb.Leave()))
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=10)

    async def _run(self) -> None:
        try:
            async for data in self.call:
                op, version, term = self.tracker.record(self.name, data, time.perf_counter())
                if op == 0:
                    continue  # not_leader: the driver points us at the leader, so unexpected
                if self.observer and op == pb.OPERATION_UPDATE:
                    self._observe(version, pb.PlacementOrder.FromString(data))
                ack = pb.RoundAck(operation=op, version=version, term=term)  # type: ignore[arg-type]
                await self.write(pb.HostReport(ack=ack))
        except grpc.aio.AioRpcError as exc:
            if self.tracker.lost is None:
                self.tracker.lost = f"{self.name}: {exc.code().name} {exc.details()}"
            self.tracker.changed.set()

    def _observe(self, version: int, order: pb.PlacementOrder) -> None:
        if order.HasField("delta"):
            base = self.tracker.members.get(order.delta.base_version, frozenset())
            names = (set(base) - set(order.delta.removed)) | {h.name for h in order.delta.upserts}
        else:
            names = {h.name for h in order.table.hosts}
        self.tracker.members[version] = frozenset(names)

    async def heartbeat(self) -> None:
        await self.write(self.status())


class StreamLostError(RuntimeError):
    """Placement ended a simulated host's stream: what follows would not measure
    dissemination (the exit status tells `bench placement` to run it again)."""


async def wait_until(tracker: Tracker, check: Any, timeout: float) -> float:
    async with asyncio.timeout(timeout):
        while True:
            if tracker.lost is not None:
                raise StreamLostError(f"a host's stream was ended by placement ({tracker.lost})")
            tracker.changed.clear()
            done = check()
            if done is not None:
                return float(done)
            await tracker.changed.wait()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tracker = Tracker()
    channels = [
        grpc.aio.insecure_channel(args.leader)
        for _ in range(max(1, args.hosts // STREAMS_PER_CHANNEL))
    ]
    hosts = [
        SimHost(f"sim-{i:05d}", channels[i % len(channels)], tracker, observer=(i == 0))
        for i in range(args.hosts)
    ]
    names = {h.name for h in hosts}
    join_start = time.perf_counter()
    await asyncio.gather(*(h.start() for h in hosts))
    join_done = await wait_until(tracker, lambda: tracker.all_unlocked(names), args.timeout)
    rounds_for_join = len(tracker.members)

    async def heartbeats() -> None:
        while True:
            await asyncio.sleep(args.heartbeat)  # the simulated sidecars' heartbeat period
            await asyncio.gather(*(h.heartbeat() for h in hosts))

    beat = asyncio.create_task(heartbeats())
    latencies: list[float] = []
    bytes_per_round: list[int] = []
    for k in range(args.changes):
        extra = SimHost(f"sim-extra-{k}", channels[0], tracker, observer=False)
        before = max(tracker.members, default=0)
        t0 = time.perf_counter()
        await extra.start()
        done = await wait_until(
            tracker,
            lambda e=extra, b=before: tracker.all_unlocked(names | {e.name}, newer_than=b),
            args.timeout,
        )
        latencies.append((done - t0) * 1000)
        version = max(v for v, m in tracker.members.items() if extra.name in m)
        bytes_per_round.append(tracker.bytes_by_version[version])
        before = max(tracker.members, default=0)
        t0 = time.perf_counter()
        await extra.leave()
        done = await wait_until(
            tracker,
            lambda e=extra, b=before: tracker.all_unlocked(names, absent=e.name, newer_than=b),
            args.timeout,
        )
        latencies.append((done - t0) * 1000)
    beat.cancel()
    for ch in channels:
        await ch.close(grace=None)
    return {
        "hosts": args.hosts,
        "join_s": join_done - join_start,
        "join_rounds": rounds_for_join,
        "latencies_ms": latencies,
        "changes": ["join", "leave"] * args.changes,
        "bytes_per_round": bytes_per_round,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.placement_sim")
    p.add_argument("--leader", required=True)
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args))
    except StreamLostError as exc:
        print(f"placement_sim: {exc}", file=sys.stderr)
        return STREAM_LOST
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
