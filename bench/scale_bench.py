"""`actorflow bench scale`: throughput against the number of sidecar+app pairs.

The same fixed workload runs on `actorflow up --sidecars N` (SQLite) for each N in
`--sizes` (default 1 2 4), with one SDK app process (`bench/bench_app.py`) beside each
sidecar: `--workflows` (240) `naps` workflows started at once, clients spread over the
sidecars' gRPC endpoints (one `DaprWorkflowClient` per sidecar), each running `--steps`
(4) sequential `nap` activities that sleep 200 ms. Each app keeps its SDK's default
concurrency (a thread pool of cores + 4), so one pair runs at most about
`threads / 0.2 s` naps per second whatever the CPU: the work is I/O-bound and the
2-core machine is not the limit, which leaves the engine's scaling to be seen.
workflows/s = workflows / (time from the first start until the last completion seen).
`speedup` = throughput with the most pairs / throughput with one (target: >= 3.2 with 4;
reported, not asserted).

`--live`: the workload runs on 2 pairs; once `--add-at` of its naps have run, a sidecar
is added (`actorflow scale --add`) and an app started beside it; once `--remove-at`
have run, one of the first sidecars is removed (`actorflow scale --remove NAME`) and its
app stopped. Then every workflow is checked: COMPLETED with the right output and a
history holding one ExecutionCompleted and one TaskCompleted per step (none lost, none
completed twice). The apps append every nap execution to a shared file
(`BENCH_NAP_LOG`), from which duplicated activity executions (allowed: activities run at
least once) are counted and reported. Exit status 1 when a workflow is lost or wrong.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import add_common_args, emit, now_iso, result, status_printer
from bench.scale_pairs import APP, NAP_S, Pairs, port_blocks, running_pairs
from bench.scale_workload import (
    WAIT_CHUNK_S,
    Workload,
    activity_metrics,
    check_histories,
    check_outputs,
    expected_output,
    nap_runs,
)

# The names below were all defined here before the pairs and the workload moved out;
# `bench.scale_bench` stays the one import path for them (tests, scripts in RESULTS.md).
__all__ = [
    "APP",
    "NAP_S",
    "TARGET_SPEEDUP_4",
    "WAIT_CHUNK_S",
    "Pairs",
    "Workload",
    "activity_metrics",
    "build_parser",
    "check_histories",
    "check_outputs",
    "expected_output",
    "live",
    "live_scaler",
    "main",
    "nap_runs",
    "port_blocks",
    "print_table",
    "run_size",
    "running_pairs",
    "scale",
]

TARGET_SPEEDUP_4 = 3.2


# ---- the scenarios


def run_size(args: argparse.Namespace, root: Path, n: int) -> dict[str, Any]:
    status = status_printer(args.quiet, f"{n} sidecars")
    status("starting the cluster and the apps")
    with running_pairs(root / f"s{n}", n, spare=0) as pairs:
        warm = Workload(pairs, 4 * n, 1, f"warm{n}")
        warm.run(args.timeout, status)
        work = Workload(pairs, args.workflows, args.steps, f"s{n}")
        wall = work.run(args.timeout, status)
        lost, wrong = check_outputs(work)
        run: dict[str, Any] = {
            "sidecars": n,
            "workflows_per_s": round(len(work.ids) / wall, 2),
            "activities_per_s": round(len(work.ids) * work.steps / wall, 1),
            "wall_s": round(wall, 3),
            "ideal_workflows_per_s": round(pairs.threads * n / NAP_S / work.steps, 2),
            "lost": len(lost),
            "wrong_output": len(wrong),
            **activity_metrics(work),
        }
        status(f"{run['workflows_per_s']} workflows/s")
        return run


def scale(args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], bool]:
    runs = [run_size(args, root, n) for n in args.sizes]
    one = next((r for r in runs if r["sidecars"] == 1), runs[0])
    most = max(runs, key=lambda r: r["sidecars"])
    speedup = most["workflows_per_s"] / one["workflows_per_s"] if one["workflows_per_s"] else 0.0
    metrics: dict[str, Any] = {"runs": runs, "speedup": round(speedup, 2)}
    if most["sidecars"] == 4 and one["sidecars"] == 1:
        metrics["target_speedup_4_over_1"] = TARGET_SPEEDUP_4
        metrics["target_met"] = speedup >= TARGET_SPEEDUP_4
    ok = all(r["lost"] == 0 and r["wrong_output"] == 0 for r in runs)
    return metrics, ok


def live_scaler(
    args: argparse.Namespace, pairs: Pairs, work: Workload, notes: dict[str, Any]
) -> Callable[[], None]:
    """Add a pair at `--add-at` of the naps, remove one of the first at `--remove-at`."""
    total = len(work.ids) * work.steps
    status = status_printer(args.quiet, "live")

    def scaler() -> None:
        pairs.wait_naps(int(args.add_at * total), deadline=time.monotonic() + args.timeout)
        notes["added_after_naps"] = pairs.naps_done()
        notes["added"] = pairs.add()
        status(f"added {notes['added']} (+ app) after {notes['added_after_naps']} naps")
        pairs.wait_naps(int(args.remove_at * total), deadline=time.monotonic() + args.timeout)
        victim = pairs.names()[0]
        notes["removed_after_naps"] = pairs.naps_done()
        pairs.remove(victim)
        notes["removed"] = victim
        status(f"removed {victim} (and its app) after {notes['removed_after_naps']} naps")

    return scaler


def live(args: argparse.Namespace, root: Path) -> tuple[dict[str, Any], bool]:
    status = status_printer(args.quiet, "live")
    status("starting the cluster (2 sidecars) and the apps")
    notes: dict[str, Any] = {}
    with running_pairs(root / "live", 2, spare=1) as pairs:
        work = Workload(pairs, args.workflows, args.steps, "live")
        wall = work.run(args.timeout, status, beside=live_scaler(args, pairs, work, notes))
        lost, wrong = check_outputs(work)
        anomalies = check_histories(work) if not lost else []
        metrics: dict[str, Any] = {
            "workflows": len(work.ids),
            "completed": len(work.ids) - len(lost),
            "lost": lost,
            "wrong_output": wrong,
            "history_anomalies": anomalies,
            **activity_metrics(work),
            **notes,
            "workflows_per_s": round(len(work.ids) / wall, 2),
            "wall_s": round(wall, 3),
        }
    return metrics, not (lost or wrong or anomalies)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actorflow bench scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--workflows", type=int, default=None, help="240; --live: 200")
    p.add_argument("--steps", type=int, default=None, help="naps per workflow: 4; --live: 10")
    p.add_argument("--live", action="store_true", help="add and remove a pair mid-run")
    p.add_argument("--add-at", type=float, default=0.15, help="--live: fraction of naps run")
    p.add_argument("--remove-at", type=float, default=0.5, help="--live: fraction of naps run")
    p.add_argument("--timeout", type=float, default=300.0, help="per workload, seconds")
    p.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    return add_common_args(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workflows = args.workflows or (200 if args.live else 240)
    args.steps = args.steps or (10 if args.live else 4)
    logging.getLogger("DaprWorkflowClient").setLevel(logging.WARNING)
    started = now_iso()
    root = Path(tempfile.mkdtemp(prefix="af-bench-scale-"))
    ok = False
    try:
        metrics, ok = live(args, root) if args.live else scale(args, root)
    finally:
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"  data directories and logs kept in {root}", file=sys.stderr)
    params: dict[str, Any] = {
        "workflows": args.workflows, "steps": args.steps, "nap_ms": int(NAP_S * 1000),
        "store": "sqlite", "app": "bench/bench_app.py (SDK default concurrency)",
    }  # fmt: skip
    if args.live:
        params.update(live=True, sidecars="2, +1, -1", add_at=args.add_at,
                      remove_at=args.remove_at)  # fmt: skip
    else:
        params["sizes"] = args.sizes
    data = result("scale", params, metrics, started)
    emit(data, args.json, args.quiet, args.plot)
    if not args.quiet and not args.live:
        print_table(metrics)
    return 0 if ok else 1


def print_table(metrics: dict[str, Any]) -> None:
    print(f"  {'sidecars':>8} {'workflows/s':>12} {'activities/s':>13} {'ideal wf/s':>11}")
    for r in metrics["runs"]:
        print(f"  {r['sidecars']:>8} {r['workflows_per_s']:>12.2f} "
              f"{r['activities_per_s']:>13.1f} {r['ideal_workflows_per_s']:>11.2f}")  # fmt: skip
    line = f"  speedup {metrics['speedup']:.2f}x"
    if "target_met" in metrics:
        line += f" (target >= {TARGET_SPEEDUP_4}x: {'met' if metrics['target_met'] else 'MISSED'})"
    print(line)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
