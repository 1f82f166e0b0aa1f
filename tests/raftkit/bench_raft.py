"""Commit latency and throughput of a 3-node raftkit cluster on loopback, one process per
node, with and without the syncing journal. Not a test (no assertions on speed):

    .venv/bin/python tests/raftkit/bench_raft.py [--json out.json] [--data-dir DIR]

Modes:
- `pysyncobj`: pysyncobj's own FileJournal (mmap, never synced): the baseline.
- `raftkit-nosync`: raftkit's journal and acknowledgement holding, fdatasync replaced
  by a no-op: the cost of the machinery alone.
- `raftkit-fdatasync`: the real thing.
- `raftkit-slow-disk`: fdatasync plus 2 ms per sync, as on a disk without a write cache
  (fdatasync on this VM's disk takes ~0.06 ms): shows what group commit buys.

The leader runs `sequential` proposals one after the other (latency), then `total`
proposals with `concurrency` in flight (throughput, and how many syncs they took).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from raftkit_harness import Cluster

MODES: dict[str, dict[str, Any]] = {
    "pysyncobj": {"durable_journal": False, "sync": "fdatasync"},
    "raftkit-nosync": {"durable_journal": True, "sync": "none"},
    "raftkit-fdatasync": {"durable_journal": True, "sync": "fdatasync"},
    "raftkit-slow-disk": {"durable_journal": True, "sync": "slow"},
}


def run_mode(
    base: Path, mode: str, sequential: int, total: int, concurrency: int
) -> dict[str, Any]:
    spec = MODES[mode]
    with Cluster(base / mode, sync=spec["sync"], durable_journal=spec["durable_journal"]) as c:
        c.start_all()
        leader, _ = c.wait_leader()
        result = leader.request(
            "bench", timeout=300.0, sequential=sequential, total=total, concurrency=concurrency
        )
        statuses = [n.request("status", timeout=5.0) for n in c.nodes]
        for node in c.nodes:
            node.stop()
    result.pop("id", None)
    result.pop("ok", None)
    entries = total + sequential
    result["follower_syncs"] = [
        s["syncs"] for s in statuses if s["address"] != leader.address and s["syncs"] is not None
    ]
    result["entries"] = entries
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="raftkit-bench-"))
    results = {}
    for mode in args.modes.split(","):
        results[mode] = run_mode(base, mode, args.sequential, args.total, args.concurrency)
    header = f"{'mode':<20}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'commits/s':>11}  syncs"
    print(f"data dir {base} ({os.cpu_count()} cores, {platform.processor() or 'cpu?'})")
    print(header)
    for mode, r in results.items():
        syncs = f"leader {r['leader_syncs']}, followers {r['follower_syncs']}"
        print(
            f"{mode:<20}{r['latency_p50_ms']:>9.2f}{r['latency_p99_ms']:>9.2f}"
            f"{r['latency_mean_ms']:>9.2f}{r['commits_per_s']:>11.0f}  {syncs}"
        )
    if args.json:
        params = {k: getattr(args, k) for k in ("sequential", "total", "concurrency")}
        document = {
            "scenario": "raftkit-journal",
            "params": params,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "started_at": time.time(),
            "metrics": results,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
