"""`actorflow bench placement`: dissemination latency, bytes per round, ring lookups.

Starts a 3-node placement cluster (real processes, loopback, a temporary data directory),
then runs `bench.placement_sim` in its own process with `--hosts` simulated sidecars.
Reported (DESIGN.md section 7):

- `dissemination_p50_ms` / `_p99_ms`: from one membership change (a host joins or leaves)
  until every host holds UNLOCK for a table version that reflects it, over `--changes`
  joins and as many leaves;
- `bytes_per_round`: order bytes all hosts received for one round (LOCK, UPDATE with the
  table, UNLOCK), median over the joins;
- `lookups_per_s`: ring lookups of distinct actor ids in one process, 100 hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import add_common_args, emit, now_iso, percentile, result, status_printer
from bench.ring_lookup import measure_build_ms, measure_lookups
from placement.localcluster import PlacementCluster


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actorflow bench placement", description=__doc__)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--changes", type=int, default=20, help="joins (each followed by a leave)")
    # The best 20,000-lookup window over this long (see `bench.ring_lookup`). The
    # machine here has slow phases of several seconds at half speed (in one idle process
    # the best window of each second read 244-552k lookups/s within a minute): 2 s could
    # fall inside one.
    p.add_argument("--lookup-seconds", type=float, default=10.0)
    return add_common_args(p)


async def _leader_api(cluster: PlacementCluster) -> str:
    return (await cluster.leader(timeout=30)).api


def run(args: argparse.Namespace) -> dict[str, object]:
    started = now_iso()
    status = status_printer(args.quiet, "placement")
    with tempfile.TemporaryDirectory(prefix="af-bench-placement-") as tmp:
        cluster = PlacementCluster(
            Path(tmp), extra_args=["--host-timeout=30", "--ack-timeout=10", "--log-level=WARNING"]
        )
        cluster.start()
        try:
            leader = asyncio.run(_leader_api(cluster))
            status(f"3 nodes up; {args.hosts} simulated hosts join, then {args.changes} changes")
            out = Path(tmp) / "sim.json"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.placement_sim",
                    f"--leader={leader}",
                    f"--hosts={args.hosts}",
                    f"--changes={args.changes}",
                    f"--out={out}",
                ],
                check=True,
                timeout=600,
            )
            sim = json.loads(out.read_text())
        finally:
            cluster.stop()
    lat = sim["latencies_ms"]
    status(f"dissemination measured; ring lookups for {args.lookup_seconds:g} s")
    metrics = {
        "dissemination_p50_ms": percentile(lat, 50),
        "dissemination_p99_ms": percentile(lat, 99),
        "dissemination_max_ms": max(lat) if lat else 0.0,
        "bytes_per_round": int(percentile(sim["bytes_per_round"], 50)),
        "lookups_per_s": measure_lookups(args.lookup_seconds),
        "ring_build_ms_100_hosts": measure_build_ms(100),
        "ring_build_ms_1000_hosts": measure_build_ms(1000),
        "join_storm_s": sim["join_s"],
        "join_storm_rounds": sim["join_rounds"],
        "changes_measured": len(lat),
    }
    params = {"hosts": args.hosts, "changes": args.changes, "placement_nodes": 3}
    return result("placement", params, metrics, started)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emit(run(args), args.json, args.quiet, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
