"""`actorflow bench locust`: a load test of the workflow HTTP API with locust.

Brings up `actorflow up --sidecars N` (SQLite) in a temporary directory with one replica
of the example app (`examples/workflows.py`, the unchanged Dapr SDK) beside each sidecar,
or reuses a running cluster given by `--host URL[,URL...]`, then runs locust headless as
a subprocess (locust monkey-patches the standard library for gevent on import) with the
users of `bench/locustfile.py`, spread over every sidecar's HTTP port.

Writes into `--out DIR`: locust's JSON (`locust.json`), CSV (`locust_stats.csv`, ...),
log, and the locustfile's ledger (`workflows.json`: workflows started, completed
correctly and failed, per type, with their latencies). `--json PATH` gets the summary
of DESIGN.md section 7:

- `failures`: failed locust entries (HTTP calls and workflows) plus workflows that never
  reached an end (a user stopped mid-workflow): each counts once;
- `requests`: HTTP calls made; `workflows`: workflows started;
- `workflows_per_s`: workflows completed correctly per second of the run;
- `workflow_p50_ms`, `workflow_p95_ms`, `workflow_p99_ms`: start to observed
  completion of those workflows, from the ledger's raw samples.

Locust stops its users gracefully (`--stop-timeout` = the per-workflow deadline + 15 s),
so every workflow started reaches an end or its deadline before the figures are taken.

Exit code: 0 when `failures / (requests + workflows)` is at most `--max-failure-ratio`
(default 0: any failure fails the run) and the workflow p95 is within `--max-p95-ms`
(when given); 1 when a threshold is missed; 2 when locust did not run to its end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actorflow.testing import UpCluster, free_port_block
from bench.report import add_common_args, emit, now_iso, percentile, result, status_printer

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
EXAMPLE_APP = ROOT / "examples" / "workflows.py"
DEFAULT_OUT = ROOT / "bench" / "out" / "locust"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="actorflow bench locust",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=20, help="concurrent locust users")
    p.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--sidecars", type=int, default=2, help="sidecars of the cluster brought up")
    p.add_argument(
        "--host",
        default=None,
        help="reuse a running cluster: sidecar HTTP base URL(s), comma-separated",
    )
    p.add_argument(
        "--deadline-s",
        type=float,
        default=60.0,
        help="per-workflow deadline; a workflow not done by then is a failure",
    )
    p.add_argument("--fan-n", type=int, default=5, help="activities per fan_out_fan_in")
    p.add_argument("--max-failure-ratio", type=float, default=0.0)
    p.add_argument("--max-p95-ms", type=float, default=None)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for locust's files")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.users < 1 or args.spawn_rate <= 0 or args.duration <= 0 or args.sidecars < 1:
        p.error("--users, --spawn-rate, --duration and --sidecars must be positive")
    return args


# ---- the cluster under test


def _http_ok(url: str, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return bool(200 <= r.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    token = os.environ.get("DAPR_API_TOKEN")
    if token:
        request.add_header("dapr-api-token", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


def warm_up(hosts: list[str], timeout_s: float = 120.0) -> None:
    """One small fan-out through each sidecar, so that every app is connected and every
    code path is loaded before locust measures anything."""
    deadline = time.monotonic() + timeout_s
    pending: dict[str, str] = {}
    for i, host in enumerate(hosts):
        while not _http_ok(f"{host}/v1.0/healthz"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host} not healthy after {timeout_s:g}s")
            time.sleep(0.2)  # polling another process's readiness, bounded
        iid = f"warmup-{os.getpid()}-{time.time_ns()}-{i}"
        status, _ = _http_json("POST", f"{host}/v1.0/workflows/fan_out_fan_in/{iid}/start", 2)
        if status != 202:
            raise RuntimeError(f"warm-up start on {host} answered {status}")
        pending[iid] = host
    while pending:
        for iid, host in list(pending.items()):
            status, state = _http_json("GET", f"{host}/v1.0/workflows/fan_out_fan_in/{iid}")
            if status == 200 and state["runtimeStatus"] == "COMPLETED":
                del pending[iid]
            elif status == 200 and state["runtimeStatus"] in ("FAILED", "TERMINATED"):
                raise RuntimeError(f"warm-up workflow {iid} ended {state['runtimeStatus']}")
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"warm-up workflows not done after {timeout_s:g}s: {pending}")
        time.sleep(0.1)  # polling the HTTP API, bounded


def _stop_apps(apps: list[subprocess.Popen[bytes]]) -> None:
    for app in apps:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
    for app in apps:
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(10)


@contextmanager
def example_cluster(sidecars: int) -> Iterator[list[str]]:
    """`actorflow up` plus one example app beside each sidecar; yields the HTTP base URLs."""
    with tempfile.TemporaryDirectory(prefix="af-bench-locust-") as tmp:
        root = Path(tmp)
        up = UpCluster(
            root / "af",
            [
                f"--sidecars={sidecars}",
                f"--base-grpc-port={free_port_block(sidecars + 2)}",
                f"--base-http-port={free_port_block(sidecars + 2)}",
            ],
        )
        apps: list[subprocess.Popen[bytes]] = []
        try:
            info = up.start()
            for i, s in enumerate(info["sidecars"]):
                env = {
                    **os.environ,
                    "DAPR_GRPC_ENDPOINT": s["grpc"],
                    "PYTHONUNBUFFERED": "1",
                    "EXAMPLES_DATA": str(root / "bank.db"),
                }
                with (root / f"app-{i}.log").open("ab") as log:
                    apps.append(
                        subprocess.Popen(
                            [sys.executable, str(EXAMPLE_APP)], stdout=log, stderr=log, env=env
                        )
                    )
            hosts = [str(s["http"]) for s in info["sidecars"]]
            warm_up(hosts)
            yield hosts
        finally:
            _stop_apps(apps)
            up.stop()


# ---- locust


PROGRESS_S = 10.0  # seconds between two progress lines while locust runs


def run_locust(args: argparse.Namespace, hosts: list[str], out: Path) -> int:
    """Locust headless in a subprocess; its return code (1 means "some failure"), or -1
    when it had to be killed at its deadline."""
    stop_timeout = args.deadline_s + 15
    env = {
        **os.environ,
        "AF_LOCUST_HOSTS": ",".join(hosts),
        "AF_LOCUST_DEADLINE_S": str(args.deadline_s),
        "AF_LOCUST_FAN_N": str(args.fan_n),
        "AF_LOCUST_REPORT": str(out / "workflows.json"),
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{args.duration:g}s",
        "--stop-timeout",
        f"{stop_timeout:g}",
        "--host",
        hosts[0],
        "--json-file",
        str(out / "locust"),
        "--csv",
        str(out / "locust"),
        "--only-summary",
        "--logfile",
        str(out / "locust.log"),
        "--loglevel",
        "INFO",
    ]
    with (out / "locust-stdout.log").open("wb") as log:
        # cwd=out: locust reads locust.conf and pyproject.toml [tool.locust] from its cwd.
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out)
        status = status_printer(args.quiet, "locust")
        status(f"{args.users} users on {len(hosts)} sidecar(s) for {args.duration:g} s")
        began = time.monotonic()
        deadline = began + args.duration + stop_timeout + 120
        try:
            while True:
                try:  # a line of progress every PROGRESS_S while locust runs
                    return proc.wait(timeout=max(0.0, min(PROGRESS_S, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        return -1
                    status(f"{time.monotonic() - began:.0f} s of {args.duration:g}")
        finally:
            if proc.poll() is None:  # timed out, or we were interrupted
                proc.kill()
                proc.wait(10)


def summarize(out: Path, duration_s: float) -> dict[str, Any]:
    """The section 7 metrics from locust's JSON and the locustfile's ledger."""
    entries: list[dict[str, Any]] = json.loads((out / "locust.json").read_text())
    ledger: dict[str, Any] = json.loads((out / "workflows.json").read_text())
    http = [e for e in entries if e["method"] != "WORKFLOW"]
    latencies = [ms for t in ledger["by_type"].values() for ms in t["latencies_ms"]]
    unresolved = ledger["started"] - ledger["completed"] - ledger["failed"]
    failures = sum(int(e["num_failures"]) for e in entries) + unresolved
    requests = sum(int(e["num_requests"]) for e in http)
    window = ledger["window_s"] or duration_s
    return {
        "failures": failures,
        "requests": requests,
        "workflows_per_s": ledger["completed"] / window if window > 0 else 0.0,
        "workflow_p50_ms": percentile(latencies, 50),
        "workflow_p95_ms": percentile(latencies, 95),
        "workflow_p99_ms": percentile(latencies, 99),
        "workflows": ledger["started"],
        "workflows_completed": ledger["completed"],
        "workflows_failed": ledger["failed"],
        "workflows_unresolved": unresolved,
        "http_failures": sum(int(e["num_failures"]) for e in http),
        "failure_ratio": failures / max(1, requests + ledger["started"]),
        "requests_per_s": requests / window if window > 0 else 0.0,
        "window_s": window,
        "by_type": {
            kind: {
                "completed": t["completed"],
                "failed": t["failed"],
                "p50_ms": percentile(t["latencies_ms"], 50),
                "p95_ms": percentile(t["latencies_ms"], 95),
            }
            for kind, t in sorted(ledger["by_type"].items())
        },
    }


def verdict(args: argparse.Namespace, metrics: dict[str, Any]) -> list[str]:
    """The thresholds missed, in words (empty when the run passes)."""
    missed = []
    if metrics["failure_ratio"] > args.max_failure_ratio:
        missed.append(
            f"failure ratio {metrics['failure_ratio']:.4f} > {args.max_failure_ratio:g} "
            f"({metrics['failures']} failures)"
        )
    if args.max_p95_ms is not None and metrics["workflow_p95_ms"] > args.max_p95_ms:
        missed.append(f"workflow p95 {metrics['workflow_p95_ms']:.1f} ms > {args.max_p95_ms:g} ms")
    return missed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("locust.json", "workflows.json"):
        (out / stale).unlink(missing_ok=True)
    started = now_iso()
    if args.host:
        hosts = [h.strip().rstrip("/") for h in args.host.split(",") if h.strip()]
        rc = run_locust(args, hosts, out)
    else:
        with example_cluster(args.sidecars) as hosts:
            rc = run_locust(args, hosts, out)
    if rc not in (0, 1) or not (out / "locust.json").exists():
        print(f"locust did not finish (rc {rc}); see {out}/locust-stdout.log", file=sys.stderr)
        return 2
    if not (out / "workflows.json").exists():
        print(f"the locustfile wrote no ledger; see {out}/locust.log", file=sys.stderr)
        return 2
    metrics = summarize(out, args.duration)
    params: dict[str, Any] = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "duration_s": args.duration,
        "sidecars": len(hosts),
        "store": "external" if args.host else "sqlite",
        "deadline_s": args.deadline_s,
        "fan_n": args.fan_n,
        "app": "examples/workflows.py",
    }
    data = result("locust", params, metrics, started)
    emit(
        {**data, "metrics": {k: v for k, v in metrics.items() if k != "by_type"}}, None, args.quiet
    )
    emit(data, args.json, quiet=True, plot_dir=args.plot)  # with by_type
    missed = verdict(args, metrics)
    if not args.quiet:
        for kind, t in metrics["by_type"].items():
            print(
                f"  {kind:<20} ok {t['completed']:>6}  failed {t['failed']:>4}  "
                f"p50 {t['p50_ms']:8.1f} ms  p95 {t['p95_ms']:8.1f} ms"
            )
        print(f"  locust files in {out}")
        for line in missed or ["thresholds met"]:
            print(f"  {'MISSED: ' if missed else ''}{line}")
    return 1 if missed else 0
