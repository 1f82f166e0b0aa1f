"""`actorflow bench actors`: a call to an actor hosted on another sidecar.

Starts `actorflow up --sidecars 2 --test-actors` in a temporary directory. The bench
process then joins the cluster as a caller: it runs the sidecar's own routing stack
(placement client, `ActorRouter`, the pipelined peer pool) and calls `get` on counter
actors hosted by the sidecars, at a fixed rate (open loop: call i starts at i/rate
seconds, whatever happened before), timing each `router.call` from start to result.
Every call is remote: the caller hosts no counters. Reported (DESIGN.md section 7):
`remote_call_p50_ms`, `remote_call_p99_ms`, `calls_per_s` (achieved); plus, for
comparison, the same calls made over the sidecar's HTTP actor API.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from actorflow.testing import UpCluster, free_port_block
from bench.report import add_common_args, emit, now_iso, percentile, result
from placement.client import ClientConfig, PlacementClient
from placement.table import TableHost
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool
from sidecar.actors.router import ActorRouter

CALLER_TYPE = "bench.caller"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actorflow bench actors", description=__doc__)
    p.add_argument("--rate", type=float, default=500.0, help="calls per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=500)
    return add_common_args(p)


async def _paced(rate: float, seconds: float, one: Any) -> tuple[list[float], float]:
    """Start call i at i/rate seconds; return each call's latency (ms) and the elapsed s."""
    latencies: list[float] = []

    async def timed(i: int) -> None:
        started = time.perf_counter()
        await one(i)
        latencies.append((time.perf_counter() - started) * 1000)

    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the open-loop schedule
        tasks.append(asyncio.create_task(timed(i)))
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - start


async def _drive(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    me = TableHost("bench-caller", "127.0.0.1:9", "bench", "default", (CALLER_TYPE,), 1)
    placement = PlacementClient(ClientConfig(tuple(info["placement"])), me)
    await placement.start()
    await placement.wait_for_version(1, 30)
    host = ActorHost({}, sidecar=me.name, services=None, owns=lambda t, i: None)
    peers = PeerPool()
    router = ActorRouter(placement, host, peers, me.name)
    targets = [f"target-{i}" for i in range(64)]
    try:

        async def call(i: int) -> None:
            await router.call("counter", targets[i % len(targets)], "get", b"")

        for i in range(args.warmup):
            await call(i)
        # As a sidecar does after start-up (sidecar/cli.py): keep long-lived objects out
        # of the cyclic collector's way.
        gc.collect()
        gc.freeze()
        inner, elapsed = await _paced(args.rate, args.seconds, call)
        async with aiohttp.ClientSession() as http:
            url = f"{info['sidecars'][0]['http']}/v1.0/actors/counter/{{}}/method/get"

            async def over_http(i: int) -> None:
                target = targets[i % len(targets)]
                async with http.post(url.format(target)) as resp:
                    await resp.read()

            outer, _ = await _paced(args.rate, min(args.seconds, 5.0), over_http)
    finally:
        await placement.stop()
        await peers.close()
    return {
        "remote_call_p50_ms": percentile(inner, 50),
        "remote_call_p99_ms": percentile(inner, 99),
        "calls_per_s": len(inner) / elapsed,
        "calls": float(len(inner)),
        "http_api_p50_ms": percentile(outer, 50),
        "http_api_p99_ms": percentile(outer, 99),
        # Every router call, for the histogram (`--plot`); not one of section 7's figures.
        "samples_ms": [round(ms, 3) for ms in inner],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = now_iso()
    with tempfile.TemporaryDirectory(prefix="af-bench-actors-") as tmp:
        up = UpCluster(
            Path(tmp) / "af",
            ["--sidecars=2", "--test-actors", f"--base-grpc-port={free_port_block(4)}",
             f"--base-http-port={free_port_block(4)}"],
        )  # fmt: skip
        info = up.start()
        try:
            metrics = uvloop.run(_drive(info, args))
        finally:
            up.stop()
    params = {"rate": args.rate, "seconds": args.seconds, "sidecars": 2, "store": "sqlite"}
    emit(result("actors", params, metrics, started), args.json, args.quiet, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
