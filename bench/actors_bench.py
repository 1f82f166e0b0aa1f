"""`actorflow bench actors`: a call to an actor hosted on another sidecar.

Starts `actorflow up --sidecars 2 --test-actors` in a temporary directory. The bench
process then joins the cluster as a caller: it runs the sidecar's own routing stack
(placement client, `ActorRouter`, the pipelined peer pool) and calls `get` on counter
actors hosted by the sidecars, at a fixed rate (open loop: call i starts at i/rate
seconds, whatever happened before), timing each `router.call` from start to result.
Every call is remote: the caller hosts no counters. Reported (DESIGN.md section 7):
`remote_call_p50_ms`, `remote_call_p99_ms`, `calls_per_s` (achieved); plus, for
comparison, the same calls made over the sidecar's HTTP actor API, and the transport
floor: the same paced calls through the same `PeerPool` to `bench.peer_floor`, a
process serving the sidecar's `PeerService` with nothing behind it (no actor, table or
store), measured in the same run beside the same cluster (`peer_floor_p50_ms`,
`peer_floor_p99_ms`). `--tls` runs all of it over mutual TLS (`actorflow up --tls`; the
caller and the floor with the cluster's certificate).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from actorflow.certs import CertPaths
from actorflow.testing import UpCluster, free_port_block
from bench.report import add_common_args, emit, now_iso, percentile, result
from placement.client import ClientConfig, PlacementClient
from placement.table import TableHost
from raftkit.tls import TlsFiles
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool
from sidecar.actors.router import ActorRouter
from sidecar.api.v1 import actors_pb2 as pb

CALLER_TYPE = "bench.caller"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actorflow bench actors", description=__doc__)
    p.add_argument("--rate", type=float, default=500.0, help="calls per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument(
        "--tls",
        action="store_true",
        help="the cluster, the caller and the floor over mutual TLS (`actorflow up --tls`)",
    )
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


async def _floor(address: str, args: argparse.Namespace, tls: TlsFiles | None) -> list[float]:
    """The paced calls through a `PeerPool` to `bench.peer_floor` (no actor behind it)."""
    pool = PeerPool(tls)

    async def call(i: int) -> None:
        ref = pb.ActorRef(actor_type="counter", actor_id=f"target-{i % 64}")
        message = pb.ActorCall(
            call_id=pool.next_call_id(), actor=ref, method="get", table_version=1,
            timeout_ms=5000,
        )  # fmt: skip
        result = await pool.call(address, message, 5.0)
        if result.status != pb.CALL_STATUS_OK:
            raise RuntimeError(f"peer floor call failed: {result.message}")

    try:
        for i in range(args.warmup):
            await call(i)
        latencies, _ = await _paced(args.rate, args.seconds, call)
    finally:
        await pool.close()
    return latencies


async def _drive(
    info: dict[str, Any], args: argparse.Namespace, floor_address: str, tls: TlsFiles | None
) -> dict[str, Any]:
    me = TableHost("bench-caller", "127.0.0.1:9", "bench", "default", (CALLER_TYPE,), 1)
    placement = PlacementClient(ClientConfig(tuple(info["placement"]), tls=tls), me)
    await placement.start()
    await placement.wait_for_version(1, 30)
    host = ActorHost({}, sidecar=me.name, services=None, owns=lambda t, i: None)
    peers = PeerPool(tls)
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
        floor = await _floor(floor_address, args, tls)
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
        "peer_floor_p50_ms": percentile(floor, 50),
        "peer_floor_p99_ms": percentile(floor, 99),
        # Every router call, for the histogram (`--plot`); not one of section 7's figures.
        "samples_ms": [round(ms, 3) for ms in inner],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = now_iso()
    with tempfile.TemporaryDirectory(prefix="af-bench-actors-") as tmp:
        tls_args = ["--tls", f"--base-peer-port={free_port_block(4)}"] if args.tls else []
        up = UpCluster(
            Path(tmp) / "af",
            ["--sidecars=2", "--test-actors", f"--base-grpc-port={free_port_block(4)}",
             f"--base-http-port={free_port_block(4)}", *tls_args],
        )  # fmt: skip
        info = up.start()
        tls, env = None, dict(os.environ)
        if "tls" in info:
            paths = CertPaths.from_json(info["tls"])
            tls = paths.load()
            env.update(paths.env())
        floor = subprocess.Popen(
            [sys.executable, "-m", "bench.peer_floor", "--port", "0"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert floor.stdout is not None
            ready = floor.stdout.readline().split()
            if ready[:1] != ["READY"]:
                raise RuntimeError(f"bench.peer_floor did not start: {ready!r}")
            metrics = uvloop.run(_drive(info, args, f"127.0.0.1:{ready[1]}", tls))
        finally:
            floor.terminate()
            floor.wait(timeout=10)
            up.stop()
    params = {"rate": args.rate, "seconds": args.seconds, "sidecars": 2, "store": "sqlite",
              "tls": args.tls}  # fmt: skip
    emit(result("actors", params, metrics, started), args.json, args.quiet, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
