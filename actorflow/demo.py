"""`actorflow demo`: a local multi-node cluster at work, narrated.

Runs `actorflow up` (3 placement nodes, 3 reminders nodes, 2 sidecars, SQLite) in a
temporary directory with the `counter` test actors, then: increments counters through
both sidecars, fires a durable reminder at an actor, SIGKILLs a sidecar in the middle of
the traffic and shows its actors served by the survivor with nothing lost, adds a sidecar
and shows it taking its share of the ring, and stops everything. The workflow engine is
not built yet; this shows the parts it will stand on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from actorflow.testing import UpCluster, free_port_block, pid_alive
from reminders.api.v1 import reminders_pb2 as rpb
from reminders.client import RemindersClient

COUNTERS = [f"counter-{i}" for i in range(12)]


def say(text: str) -> None:
    print(text, flush=True)


class Caller:
    def __init__(self, http: aiohttp.ClientSession, targets: list[str]) -> None:
        self.http = http
        self.targets = list(targets)
        self.retried = 0

    async def call(self, actor: str, method: str, body: bytes = b"") -> bytes:
        async with asyncio.timeout(60):
            attempt = 0
            while True:
                target = self.targets[(zlib.crc32(actor.encode()) + attempt) % len(self.targets)]
                attempt += 1
                url = f"{target}/v1.0/actors/counter/{actor}/method/{method}"
                try:
                    async with self.http.post(url, data=body) as resp:
                        if resp.status == 200:
                            return await resp.read()
                except aiohttp.ClientConnectionError:
                    if len(self.targets) > 1:
                        self.targets.remove(target)
                self.retried += 1
                await asyncio.sleep(0.05)  # retry pacing


def owners(data_dir: Path, since_ns: int) -> dict[str, str]:
    """Which sidecar ran each counter's latest turn after `since_ns` (from turn logs)."""
    latest: dict[str, tuple[int, str]] = {}
    for log in data_dir.glob("logs/sidecar-*.turns"):
        for line in log.read_text().splitlines():
            actor, start, _, host = line.split()
            if int(start) >= since_ns and int(start) >= latest.get(actor, (0, ""))[0]:
                latest[actor] = (int(start), host)
    return {a: h for a, (_, h) in latest.items()}


async def increments(caller: Caller, start: int, count: int) -> None:
    jobs = [(COUNTERS[n % len(COUNTERS)], f"req-{n}") for n in range(start, start + count)]

    async def worker(chunk: list[tuple[str, str]]) -> None:
        for actor, request_id in chunk:
            await caller.call(actor, "increment", request_id.encode())

    await asyncio.gather(*(worker(jobs[i::16]) for i in range(16)))


async def story(up: UpCluster, info: dict[str, Any]) -> None:
    names = {s["grpc"]: s["name"] for s in info["sidecars"]}
    async with aiohttp.ClientSession() as http:
        caller = Caller(http, [s["http"] for s in info["sidecars"]])
        t0 = time.time_ns()
        await increments(caller, 0, 1200)
        hosted = Counter(names.get(h, h) for h in owners(up.data_dir, t0).values())
        say(
            f"\n1. 1200 increments through both sidecars: {len(COUNTERS)} counter actors, "
            f"hosted {dict(hosted)} (placement decides, by consistent hashing)"
        )

        async with RemindersClient(info["reminders"]) as reminders:
            key = rpb.ReminderKey(
                namespace="default",
                app_id="app",
                actor_type="counter",
                actor_id=COUNTERS[0],
                name="heartbeat",
            )
            await reminders.create(key, due_time="200ms", period="R3/PT0.3S")
        async with asyncio.timeout(30):
            while json.loads(await caller.call(COUNTERS[0], "reminders")).get("heartbeat", 0) < 3:
                await asyncio.sleep(0.1)  # polling the actor's state
        say(
            f"2. a durable reminder R3/PT0.3S registered with the Raft-replicated reminders "
            f"service fired 3 times at {COUNTERS[0]}"
        )

        victim = info["sidecars"][0]
        t1 = time.time_ns()
        traffic = asyncio.create_task(increments(caller, 1200, 1200))
        await asyncio.sleep(0.3)  # let the traffic get going before the kill
        os.kill(victim["pid"], signal.SIGKILL)
        await traffic
        counts = [int(await caller.call(a, "get")) for a in COUNTERS]
        moved = Counter(names.get(h, h) for h in owners(up.data_dir, t1).values())
        say(
            f"3. {victim['name']} SIGKILLed during 1200 more increments: every counter now "
            f"served by {dict(moved)}; total {sum(counts)} of 2400 ({caller.retried} calls "
            "retried by the client)"
        )
        if sum(counts) != 2400:
            raise SystemExit(f"demo failed: counts {counts}")

        added = await up.scale("--add")
        cluster = up.cluster()
        names = {s["grpc"]: s["name"] for s in cluster["sidecars"]}
        caller.targets = [s["http"] for s in cluster["sidecars"]]
        t2 = time.time_ns()
        for actor in COUNTERS:
            await caller.call(actor, "get")
        spread = Counter(names.get(h, h) for h in owners(up.data_dir, t2).values())
        say(
            f"4. `actorflow scale --add` started {added.get('added')}: counters now hosted "
            f"{dict(spread)}"
        )


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="actorflow demo", description=__doc__).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="actorflow-demo-") as tmp:
        up = UpCluster(
            Path(tmp) / "cluster",
            ["--sidecars=2", "--test-actors", f"--base-grpc-port={free_port_block(6)}",
             f"--base-http-port={free_port_block(6)}"],
        )  # fmt: skip
        say(
            "actorflow demo: starting 3 placement nodes, 3 reminders nodes and 2 sidecars "
            "(SQLite store) with `actorflow up` ..."
        )
        info = up.start()
        try:
            for s in info["sidecars"]:
                say(f"  {s['name']}: gRPC {s['grpc']}, HTTP {s['http']} (healthz 204)")
            asyncio.run(story(up, info))
        finally:
            pids = (
                list(up.cluster()["pids"].values())
                if (up.data_dir / "cluster.json").exists()
                else []
            )
            code = up.stop()
        left = [p for p in pids if pid_alive(p)]
        say(
            f"5. SIGTERM to `actorflow up`: exit code {code}, {len(pids)} processes started, "
            f"{len(left)} left running"
        )
    say(
        "\nThe workflow engine (Dapr SDK apps running workflows on this cluster) is the next "
        "piece; see README.md, Status."
    )
    return 0 if not left else 1
