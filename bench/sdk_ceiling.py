"""`actorflow bench sdk-ceiling`: what the Dapr SDK's worker allows on its own.

The real SDK worker (`bench/bench_app.py`, its own process) is connected to a TaskHub
server in this process that has no engine and no store: it only hands out work items and
takes completions (the sidecar's own `AppConnections`). Every other workflow figure can
be read as a fraction of these (DESIGN.md section 7):

- `activities_per_s`: N trivial activity work items queued at once, until all answered;
  with the CPU time per activity of the app (`app_cpu_ms_per_activity`) and of this
  process (`server_cpu_ms_per_activity`: grpc.aio, the event loop, `AppConnections` and
  the N waiting coroutines, no engine and no store), the floor under a sidecar's own;
- `turns_per_s`: N one-turn workflows ("noop": start, complete) queued at once;
- `activity_rtt_p50_ms`, `turn_rtt_p50_ms`: one item at a time, round trip.

`--activities-only` and `--rtt-only` measure one part (what `bench fanout` and
`bench latency` measure right before their own runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import uvloop
from google.protobuf import empty_pb2

from bench.report import add_common_args, emit, now_iso, percentile, process_cpu_s, result
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.taskhub_wire import taskhub_generic_handler, unknown_method_handler
from sidecar.workflow.events import execution_started_event

APP = Path(__file__).resolve().parent / "bench_app.py"


class NoEngine:
    def __init__(self) -> None:
        self.apps = AppConnections()

    async def Hello(self, request: Any, context: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def GetWorkItems(self, request: Any, context: Any) -> Any:
        async for item in self.apps.stream():
            yield item

    async def CompleteActivityTask(self, request: Any, context: Any) -> Any:
        self.apps.complete(request.completionToken, request)
        return pb.CompleteTaskResponse()

    async def CompleteOrchestratorTask(self, request: Any, context: Any) -> Any:
        self.apps.complete(request.completionToken, request)
        return pb.CompleteTaskResponse()

    CompleteWorkflowTask = CompleteOrchestratorTask


def activity(i: int) -> pb.ActivityRequest:
    req = pb.ActivityRequest(name="double", taskId=i)
    req.input.value = str(i)
    req.workflowInstance.instanceId = f"ceiling-{i}"
    return req


def turn(i: int) -> pb.WorkflowRequest:
    iid = f"noop-{i}-{time.time_ns()}"
    started = pb.HistoryEvent(eventId=-1)
    started.workflowStarted.SetInParent()
    start = execution_started_event(name="noop", instance_id=iid, execution_id=iid,
                                    input=str(i), now_ms=0)  # fmt: skip
    req = pb.WorkflowRequest(instanceId=iid, newEvents=[started, start])
    req.executionId.value = iid
    return req


@asynccontextmanager
async def serving(hub: NoEngine) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """`hub` served on a loopback port with grpc.aio, and the SDK app process
    (`bench_app.py`) connected to it: (the endpoint, the app process)."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (taskhub_generic_handler(hub, aio=True), unknown_method_handler(aio=True))
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    endpoint = f"127.0.0.1:{port}"
    env = {**os.environ, "DAPR_GRPC_ENDPOINT": endpoint}
    app = subprocess.Popen([sys.executable, str(APP)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while hub.apps.connections == 0:
                await asyncio.sleep(0.05)  # waiting for the app process to connect
        yield endpoint, app
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(15)
        await server.stop(grace=None)


async def measure(args: argparse.Namespace) -> dict[str, float]:
    hub = NoEngine()
    async with serving(hub) as (_, app):
        await asyncio.gather(*(hub.apps.run_activity(activity(i)) for i in range(200)))  # warm
        metrics: dict[str, float] = {}
        if not args.rtt_only:
            metrics.update(await _activities(hub.apps, args.n, app.pid))
        if not (args.activities_only or args.rtt_only):
            started = time.perf_counter()
            await asyncio.gather(*(hub.apps.run_workflow(turn(i)) for i in range(args.n)))
            metrics["turns_per_s"] = args.n / (time.perf_counter() - started)
        if not args.activities_only:
            metrics.update(await _round_trips(hub.apps, args.rtt))
    return metrics


async def _activities(apps: AppConnections, n: int, app_pid: int) -> dict[str, float]:
    own0, app0 = process_cpu_s(os.getpid()), process_cpu_s(app_pid)
    started = time.perf_counter()
    await asyncio.gather(*(apps.run_activity(activity(i)) for i in range(n)))
    return {
        "activities_per_s": n / (time.perf_counter() - started),
        "server_cpu_ms_per_activity": (process_cpu_s(os.getpid()) - own0) * 1000 / n,
        "app_cpu_ms_per_activity": (process_cpu_s(app_pid) - app0) * 1000 / n,
    }


async def _round_trips(apps: AppConnections, count: int) -> dict[str, float]:
    rtt_a, rtt_t = [], []
    for i in range(count):
        t0 = time.perf_counter()
        await apps.run_activity(activity(i))
        rtt_a.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await apps.run_workflow(turn(i))
        rtt_t.append((time.perf_counter() - t0) * 1000)
    return {
        "activity_rtt_p50_ms": percentile(rtt_a, 50),
        "turn_rtt_p50_ms": percentile(rtt_t, 50),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow bench sdk-ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=5000, help="items per throughput phase")
    p.add_argument("--rtt", type=int, default=200, help="sequential round trips")
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--activities-only", action="store_true",
        help="measure activities_per_s only (what `bench fanout` compares each N with)",
    )  # fmt: skip
    only.add_argument(
        "--rtt-only", action="store_true",
        help="measure the round trips only (what `bench latency` compares with)",
    )  # fmt: skip
    add_common_args(p)
    args = p.parse_args(argv)
    started = now_iso()
    metrics = uvloop.run(measure(args))
    params = {
        "n": args.n, "rtt": args.rtt,
        "activities_only": args.activities_only, "rtt_only": args.rtt_only,
    }  # fmt: skip
    emit(result("sdk-ceiling", params, metrics, started), args.json, args.quiet, args.plot)
    return 0
