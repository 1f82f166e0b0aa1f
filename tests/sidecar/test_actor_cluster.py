"""The actor runtime on a real local cluster (`actorflow up`): single activation under a
SIGKILL and a join, rebalancing, and a clean stop."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actorflow.testing import UpCluster, free_port_block, pid_alive
from placement.ring import RingSet
from placement.table import TableHost
from reminders.api.v1 import reminders_pb2 as rpb
from reminders.client import RemindersClient

pytestmark = pytest.mark.slow

ACTORS = [f"c{i}" for i in range(50)]
INCREMENTS = 20_000


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpCluster]:
    grpc_base, http_base = free_port_block(8), free_port_block(8)
    cluster = UpCluster(
        tmp_path / "af",
        ["--sidecars=3", "--test-actors", f"--base-grpc-port={grpc_base}",
         f"--base-http-port={http_base}"],
    )  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.stop()


class Driver:
    """Sends increments through random live sidecars, retrying (same request id) on a
    dead sidecar or an error until it succeeds."""

    def __init__(self, http: aiohttp.ClientSession, targets: list[str]) -> None:
        self.http = http
        self.targets = list(targets)
        self.done = 0
        self.retries = 0

    async def call(self, actor: str, method: str, body: bytes, timeout_s: float = 90.0) -> bytes:
        async with asyncio.timeout(timeout_s):
            while True:
                target = random.choice(self.targets)
                url = f"{target}/v1.0/actors/counter/{actor}/method/{method}"
                try:
                    async with self.http.post(url, data=body) as resp:
                        if resp.status == 200:
                            return await resp.read()
                except aiohttp.ClientConnectionError:
                    if target in self.targets and len(self.targets) > 1:
                        self.targets.remove(target)
                self.retries += 1
                await asyncio.sleep(0.05)  # retry pacing

    async def worker(self, jobs: asyncio.Queue[tuple[str, str]]) -> None:
        while True:
            try:
                actor, request_id = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.call(actor, "increment", request_id.encode())
            self.done += 1


def turns_by_actor(logs: list[Path]) -> dict[str, list[tuple[int, int, str]]]:
    turns: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for path in logs:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                turns[parts[0]].append((int(parts[1]), int(parts[2]), parts[3]))
    return turns


def overlapping_turns(up: UpCluster) -> list[tuple[Any, ...]]:
    turns = turns_by_actor(sorted(up.data_dir.glob("logs/sidecar-*.turns")))
    overlaps = []
    for actor, seq in turns.items():
        seq.sort()
        for (s1, e1, h1), (s2, e2, h2) in itertools.pairwise(seq):
            if s2 < e1:
                overlaps.append((actor, h1, s1, e1, h2, s2, e2))
    return overlaps


async def test_single_activation_under_kill_and_join(up: UpCluster) -> None:
    info = await asyncio.to_thread(up.start)
    targets = [s["http"] for s in info["sidecars"]]
    jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for n in range(INCREMENTS):
        jobs.put_nowait((ACTORS[n % len(ACTORS)], f"req-{n}"))
    async with aiohttp.ClientSession() as http:
        driver = Driver(http, targets)
        workers = [asyncio.create_task(driver.worker(jobs)) for _ in range(48)]

        async def progress(at: int) -> None:
            while driver.done < at:
                await asyncio.sleep(0.05)  # watching the driver's own counter

        await progress(INCREMENTS // 4)
        victim = info["sidecars"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        await progress(INCREMENTS // 2)
        added = await up.scale("--add")
        assert added["ok"], added
        driver.targets = [
            s["http"] for s in up.cluster()["sidecars"] if s["name"] != victim["name"]
        ]
        await asyncio.gather(*workers)
        counts = {a: int(await driver.call(a, "get", b"")) for a in ACTORS}
    assert sum(counts.values()) == INCREMENTS, counts
    assert set(counts.values()) == {INCREMENTS // len(ACTORS)}

    turns = turns_by_actor(sorted(up.data_dir.glob("logs/sidecar-*.turns")))
    assert set(turns) == set(ACTORS)
    overlaps = overlapping_turns(up)
    assert not overlaps, f"{len(overlaps)} overlapping turns, e.g. {overlaps[:3]}"
    hosts_seen = {h for seq in turns.values() for _, _, h in seq}
    assert len(hosts_seen) >= 3, "the work must have spread over the sidecars"
    print(
        f"\n{INCREMENTS} increments, {driver.retries} retried calls, sidecars {sorted(hosts_seen)}"
    )


async def test_single_activation_while_a_sidecar_leaves(up: UpCluster) -> None:
    """A graceful leave (`actorflow scale --remove`) under load: the leaving sidecar
    finishes its turns and lets its actors go before placement gives them to others, so
    no actor runs a turn on two sidecars at once."""
    info = await asyncio.to_thread(up.start)
    leaving = info["sidecars"][0]
    jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    total = INCREMENTS // 2
    for n in range(total):
        jobs.put_nowait((ACTORS[n % len(ACTORS)], f"req-{n}"))
    async with aiohttp.ClientSession() as http:
        # Calls go through the sidecars that stay; the leaving one hosts its share.
        driver = Driver(http, [s["http"] for s in info["sidecars"][1:]])
        workers = [asyncio.create_task(driver.worker(jobs)) for _ in range(48)]
        while driver.done < total // 3:
            await asyncio.sleep(0.05)  # watching the driver's own counter
        removed = await up.scale(f"--remove={leaving['name']}")
        assert removed["ok"], removed
        await asyncio.gather(*workers)
        counts = {a: int(await driver.call(a, "get", b"")) for a in ACTORS}
    assert sum(counts.values()) == total, counts
    overlaps = overlapping_turns(up)
    assert not overlaps, f"{len(overlaps)} overlapping turns, e.g. {overlaps[:3]}"


async def test_join_moves_the_ring_share_to_the_new_sidecar(up: UpCluster) -> None:
    info = await asyncio.to_thread(up.start)
    async with aiohttp.ClientSession() as http:
        driver = Driver(http, [s["http"] for s in info["sidecars"]])
        for actor in ACTORS:
            await driver.call(actor, "increment", f"{actor}-before".encode())
        added = await up.scale("--add")
        assert added["ok"], added
        cluster = up.cluster()
        new = next(s for s in cluster["sidecars"] if s["name"] == added["added"])
        joined_ns = time.time_ns()
        for actor in ACTORS:
            await driver.call(actor, "increment", f"{actor}-after".encode())
    hosts = [TableHost(s["grpc"], s["grpc"], "app", "default", ("counter",), 1)
             for s in cluster["sidecars"]]  # fmt: skip
    ring = RingSet(hosts)
    owners = {a: ring.lookup("default", "counter", a) for a in ACTORS}
    moved = [a for a in ACTORS if owners[a] == new["grpc"]]
    assert moved, "the new sidecar should own part of the ring"
    turns = turns_by_actor(sorted(up.data_dir.glob("logs/sidecar-*.turns")))
    for actor in ACTORS:
        after = [h for start, _, h in turns[actor] if start >= joined_ns]
        assert after and set(after) == {owners[actor]}, (actor, owners[actor], after)


async def test_reminder_triggers_reach_the_owning_actor(up: UpCluster) -> None:
    info = await asyncio.to_thread(up.start)
    async with RemindersClient(info["reminders"]) as reminders:
        for actor in ACTORS[:10]:
            key = rpb.ReminderKey(
                namespace="default", app_id="app", actor_type="counter", actor_id=actor,
                name="tick",
            )  # fmt: skip
            await reminders.create(key, due_time="100ms", period="R3/PT0.2S")
    async with aiohttp.ClientSession() as http:
        driver = Driver(http, [s["http"] for s in info["sidecars"]])
        async with asyncio.timeout(30):
            for actor in ACTORS[:10]:
                while json.loads(await driver.call(actor, "reminders", b"")).get("tick", 0) < 3:
                    await asyncio.sleep(0.05)  # polling the actor's state over HTTP
        # R3 means three firings: at least once each, and the reminder is then gone.
        counts = [json.loads(await driver.call(a, "reminders", b""))["tick"] for a in ACTORS[:10]]
    assert all(c >= 3 for c in counts), counts


async def test_up_writes_cluster_json_and_stops_every_process(up: UpCluster) -> None:
    info: dict[str, Any] = await asyncio.to_thread(up.start)
    assert len(info["sidecars"]) == 3
    assert len(info["placement"]) == 3 and len(info["reminders"]) == 3
    async with aiohttp.ClientSession() as http:
        for s in info["sidecars"]:
            async with http.get(f"{s['http']}/v1.0/healthz") as resp:
                assert resp.status == 204
    pids = list(info["pids"].values())
    assert len(pids) == 9 and all(pid_alive(p) for p in pids)
    assert await asyncio.to_thread(up.stop) == 0
    assert not [p for p in pids if pid_alive(p)], "orphaned processes after SIGTERM"
    assert not (up.data_dir / "cluster.json").exists()
