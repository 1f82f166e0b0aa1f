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
import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actorflow.testing import UpCluster, free_port_block
from bench.report import add_common_args, emit, now_iso, result, status_printer

APP = Path(__file__).resolve().parent / "bench_app.py"
NAP_S = 0.2
TARGET_SPEEDUP_4 = 3.2
WAIT_CHUNK_S = 10


def port_blocks(count: int) -> tuple[int, int]:
    """Two disjoint blocks of `count` free ports (gRPC, HTTP)."""
    while True:
        grpc, http = free_port_block(count), free_port_block(count)
        if grpc + count <= http or http + count <= grpc:
            return grpc, http


class Pairs:
    """An `actorflow up` cluster with one SDK app (bench_app.py) beside each sidecar, and
    one `DaprWorkflowClient` per live sidecar. Thread-safe: workload threads pick clients
    while the live scaler adds and removes pairs."""

    def __init__(self, root: Path, sidecars: int, spare: int) -> None:
        self.root = root
        self.nap_log = root / "naps.log"
        grpc, http = port_blocks(sidecars + spare)
        self.up = UpCluster(
            root / "af",
            [f"--sidecars={sidecars}", f"--base-grpc-port={grpc}", f"--base-http-port={http}"],
        )
        self.apps: dict[str, subprocess.Popen[bytes]] = {}
        self.app_names: dict[int, str] = {}  # pid -> "app@sidecar-N", kept after it stops
        self.clients: dict[str, Any] = {}  # sidecar name -> client, live sidecars only
        self.stopping = threading.Event()
        self.threads = (os.cpu_count() or 1) + 4  # the SDK's default activity thread pool
        self._lock = threading.Lock()

    # ---- apps and clients

    def _start_app(self, sidecar: dict[str, Any]) -> None:
        env = {**os.environ, "DAPR_GRPC_ENDPOINT": sidecar["grpc"], "PYTHONUNBUFFERED": "1",
               "BENCH_NAP_LOG": str(self.nap_log)}  # fmt: skip
        env.pop("DAPR_GRPC_PORT", None)
        log = (self.root / f"app-{sidecar['name']}.log").open("ab")
        app = subprocess.Popen([sys.executable, str(APP)], stdout=log, stderr=log, env=env)
        self.apps[sidecar["name"]] = app
        self.app_names[app.pid] = f"app@{sidecar['name']}"

    def _wait_app_ready(self, name: str, timeout_s: float = 60.0) -> None:
        log = self.root / f"app-{name}.log"
        deadline = time.monotonic() + timeout_s
        while "APP READY" not in log.read_text(errors="replace"):
            if self.apps[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app beside {name} not ready: {log.read_text()[-2000:]}")
            self.stopping.wait(0.1)  # polling another process's output file, bounded

    def _connect(self, sidecar: dict[str, Any]) -> None:
        from dapr.ext.workflow import DaprWorkflowClient
        from dapr.ext.workflow.logger import LoggerOptions

        host, port = sidecar["grpc"].rsplit(":", 1)
        client = DaprWorkflowClient(host, port, LoggerOptions(log_level=logging.WARNING))
        with self._lock:
            self.clients[sidecar["name"]] = client

    def client(self, i: int) -> Any:
        with self._lock:
            names = list(self.clients)
            return self.clients[names[i % len(names)]]

    def names(self) -> list[str]:
        with self._lock:
            return list(self.clients)

    # ---- the cluster

    def start(self) -> None:
        info = self.up.start()
        for sidecar in info["sidecars"]:
            self._start_app(sidecar)
        for sidecar in info["sidecars"]:
            self._wait_app_ready(sidecar["name"])
            self._connect(sidecar)

    def add(self) -> str:
        reply = asyncio.run(self.up.scale("--add"))
        if not reply.get("ok"):
            raise RuntimeError(f"actorflow scale --add: {reply}")
        name = str(reply["added"])
        sidecar = next(s for s in self.up.cluster()["sidecars"] if s["name"] == name)
        self._start_app(sidecar)
        self._wait_app_ready(name)
        self._connect(sidecar)
        return name

    def remove(self, name: str) -> None:
        """Clients first (their waits move to other sidecars), then the sidecar (a
        graceful leave), then its app."""
        with self._lock:
            client = self.clients.pop(name)
        client.close()
        reply = asyncio.run(self.up.scale("--remove", name))
        if not reply.get("ok"):
            raise RuntimeError(f"actorflow scale --remove {name}: {reply}")
        self._stop_app(name)

    def _stop_app(self, name: str) -> None:
        app = self.apps.pop(name)
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(10)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for client in clients:
            client.close()
        for name in list(self.apps):
            self._stop_app(name)
        self.up.stop()

    # ---- progress, from the apps' nap log

    def naps_done(self) -> int:
        try:
            return self.nap_log.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def wait_naps(self, count: int, deadline: float) -> None:
        while self.naps_done() < count and time.monotonic() < deadline:
            self.stopping.wait(0.2)  # polling the apps' shared output file, bounded


@contextmanager
def running_pairs(root: Path, sidecars: int, spare: int) -> Iterator[Pairs]:
    root.mkdir(parents=True)
    pairs = Pairs(root, sidecars, spare)
    try:
        pairs.start()
        yield pairs
    finally:
        pairs.stop()


def expected_output(iid: str, steps: int) -> list[list[Any]]:
    return [[iid, step] for step in range(steps)]


class Workload:
    """W `naps` workflows started at once over the pairs' clients, and awaited."""

    def __init__(self, pairs: Pairs, workflows: int, steps: int, tag: str) -> None:
        self.pairs = pairs
        self.steps = steps
        self.ids = [f"naps-{tag}-{i:05d}" for i in range(workflows)]
        self.states: dict[str, Any] = {}
        self.finished_at: dict[str, float] = {}
        self.started_at = 0.0
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.states)

    def schedule(self, i: int) -> None:
        iid = self.ids[i]
        for attempt in range(20):
            try:
                self.pairs.client(i + attempt).schedule_new_workflow(
                    "naps", input=self.steps, instance_id=iid
                )
                return
            except Exception as exc:  # a sidecar going away: try another
                if attempt == 19:
                    raise RuntimeError(f"could not start {iid}: {exc!r}") from exc
                self.pairs.stopping.wait(0.2)

    def await_one(self, i: int, deadline: float) -> None:
        """Wait for one instance, moving to another sidecar when its own goes away."""
        iid = self.ids[i]
        attempt = i
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                state = self.pairs.client(attempt).wait_for_workflow_completion(
                    iid, timeout_in_seconds=max(1, int(min(WAIT_CHUNK_S, remaining)))
                )
            except TimeoutError:
                continue
            except Exception:  # the channel closed or the sidecar left: another one
                attempt += 1
                self.pairs.stopping.wait(0.1)
                continue
            if state is None:  # not found (yet): no hot loop
                self.pairs.stopping.wait(0.1)
                continue
            with self._lock:
                self.states[iid] = state
                self.finished_at[iid] = time.perf_counter()
            return

    def run(
        self,
        timeout_s: float,
        status: Callable[[str], None],
        beside: Callable[[], None] | None = None,
    ) -> float:
        """Start everything, wait for all (or the timeout); returns the wall time."""
        deadline = time.monotonic() + timeout_s
        n = len(self.ids)
        with ThreadPoolExecutor(max_workers=n + 2, thread_name_prefix="scale") as pool:
            self.started_at = time.perf_counter()
            list(pool.map(self.schedule, range(n)))
            futures: list[Future[None]] = [
                pool.submit(self.await_one, i, deadline) for i in range(n)
            ]
            if beside is not None:
                futures.append(pool.submit(beside))
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=5.0, return_when=FIRST_EXCEPTION)
                for f in finished:
                    f.result()  # a bug in the bench itself: raise it
                if pending:
                    elapsed = time.perf_counter() - self.started_at
                    naps = self.pairs.naps_done()
                    status(f"{self.done}/{n} workflows completed, {naps} naps run, {elapsed:.0f} s")
        if not self.finished_at:
            return timeout_s
        return max(self.finished_at.values()) - self.started_at


def nap_runs(log: Path) -> dict[tuple[str, int], list[int]]:
    """(instance id, step) -> the pids of the apps that ran it, in order."""
    runs: dict[tuple[str, int], list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                iid, step = json.loads(fields[1])
                runs.setdefault((str(iid), int(step)), []).append(int(fields[2]))
    return runs


def check_outputs(work: Workload) -> tuple[list[str], list[str]]:
    """(lost: not COMPLETED, wrong: COMPLETED with another output)."""
    lost, wrong = [], []
    for iid in work.ids:
        state = work.states.get(iid)
        if state is None or state.runtime_status.name != "COMPLETED":
            lost.append(iid)
        elif json.loads(state.serialized_output or "null") != expected_output(iid, work.steps):
            wrong.append(iid)
    return lost, wrong


def check_histories(work: Workload) -> list[str]:
    """Instances whose history is not one ExecutionCompleted and one TaskCompleted per step."""
    anomalies = []
    for i, iid in enumerate(work.ids):
        events = work.pairs.client(i).get_workflow_history(iid)
        kinds = Counter(e.event_type.name for e in events)
        got = (kinds["EXECUTION_COMPLETED"], kinds["TASK_SCHEDULED"], kinds["TASK_COMPLETED"])
        if got != (1, work.steps, work.steps):
            anomalies.append(f"{iid}: completed/scheduled/task-completed = {got}")
    return anomalies


def activity_metrics(work: Workload) -> dict[str, Any]:
    """Executions of the workload's naps from the apps' shared log; each duplicated nap
    is attributed to `first app -> rerun app` (apps named by their sidecar)."""
    ids = set(work.ids)
    runs = {k: pids for k, pids in nap_runs(work.pairs.nap_log).items() if k[0] in ids}
    expected = {(iid, step) for iid in work.ids for step in range(work.steps)}
    app = work.pairs.app_names
    moves = Counter(
        f"{app.get(pids[0], pids[0])} -> {app.get(p, p)}"
        for pids in runs.values()
        for p in pids[1:]
    )
    return {
        "activity_executions": sum(len(pids) for pids in runs.values()),
        "duplicate_activities": sum(len(pids) - 1 for pids in runs.values()),
        "duplicates_by_app": dict(moves),
        "activities_by_app": dict(
            sorted(Counter(app.get(p, str(p)) for pids in runs.values() for p in pids).items())
        ),
        "missing_activity_records": len(expected - set(runs)),
    }


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
