"""`actorflow bench actors`: a call to an actor hosted on another sidecar.

Starts `actorflow up --sidecars 2 --test-actors` in a temporary directory. Relay actors
owned by sidecar A call `get` on counter actors owned by sidecar B through A's router
(placement lookup, pipelined peer stream, B's turn) and time that inner call; the bench
drives the relays over HTTP at a fixed rate (open loop: call i is sent at i/rate
seconds, whatever happened before). Reported (DESIGN.md section 7):
`remote_call_p50_ms`, `remote_call_p99_ms` (the inner call, as sidecar A sees it) and
`calls_per_s` (achieved), plus the HTTP round trip through A for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from actorflow.testing import UpCluster, free_port_block
from bench.report import emit, now_iso, percentile, result
from placement.ring import RingSet
from placement.table import TableHost


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actorflow bench actors", description=__doc__)
    p.add_argument("--rate", type=float, default=500.0, help="calls per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _owned(ring: RingSet, owner: str, count: int, prefix: str) -> list[str]:
    ids: list[str] = []
    i = 0
    while len(ids) < count:
        actor = f"{prefix}{i}"
        if ring.lookup("default", "counter", actor) == owner:
            ids.append(actor)
        i += 1
    return ids


async def _drive(info: dict[str, object], args: argparse.Namespace) -> dict[str, float]:
    sidecars = info["sidecars"]
    assert isinstance(sidecars, list)
    a, b = sidecars[0], sidecars[1]
    ring = RingSet(
        [TableHost(s["grpc"], s["grpc"], "app", "default", ("counter",), 1) for s in sidecars]
    )
    relays = _owned(ring, a["grpc"], 16, "relay-")
    targets = _owned(ring, b["grpc"], 64, "target-")
    inner: list[float] = []
    outer: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(i: int, record: bool) -> None:
            relay, target = relays[i % len(relays)], targets[i % len(targets)]
            url = f"{a['http']}/v1.0/actors/counter/{relay}/method/relay"
            started = time.perf_counter()
            async with http.post(url, data=target.encode()) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"relay failed: {resp.status} {body[:200]!r}")
            if record:
                outer.append((time.perf_counter() - started) * 1000)
                inner.append(int(body) / 1e6)

        for i in range(args.warmup):
            await one(i, False)
        total = int(args.rate * args.seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the open-loop schedule
            tasks.append(asyncio.create_task(one(i, True)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "remote_call_p50_ms": percentile(inner, 50),
        "remote_call_p99_ms": percentile(inner, 99),
        "calls_per_s": len(inner) / elapsed,
        "http_round_trip_p50_ms": percentile(outer, 50),
        "http_round_trip_p99_ms": percentile(outer, 99),
        "calls": float(len(inner)),
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
            metrics = asyncio.run(_drive(info, args))
        finally:
            up.stop()
    params = {"rate": args.rate, "seconds": args.seconds, "sidecars": 2, "store": "sqlite"}
    emit(result("actors", params, metrics, started), args.json, args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
