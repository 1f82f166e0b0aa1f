"""The latency floor: what any sidecar could reach for `bench latency`'s workflow.

`bench latency` starts a one-activity workflow with the SDK's client and waits for it,
200 times in a row, and its target is a multiple (1.3) of the SDK worker's own three
round trips (turn, activity, turn) measured against a no-op server. Beyond those round
trips the workflow's path has legs that every engine has: the client's start call, the
client's wait call, and the hand-offs between them and the work items.

This measures them with nothing else: a TaskHub server (`InstantEngine`, in this
process, grpc.aio on uvloop, the sidecar's own `AppConnections` and wire) that keeps its
instances in a dict. No store, no actors, no placement, no reminders, nothing durable:
a start is answered at once and its first turn queued; a turn's scheduled activities go
straight to the app; the history grows in memory; a completed workflow answers the
waiting client. The real SDK worker (`bench/bench_app.py`) and the real SDK client (a
process of its own, as in `bench latency`) run against it. The p50 it reports is a floor
under any sidecar's p50 on this machine at that moment, a durable one included:
`bench latency` runs this right before each of its repetitions and prints the figures
beside its own (`floor_p50_ms`, `floor_over_sdk_round_trips`); the server's and the
app's CPU time per workflow come with them, to set beside the sidecar's.

Only what this workflow needs is served: StartInstance, WaitForInstanceCompletion,
GetInstance, the work items, and scheduleTask / completeWorkflow actions (a workflow
that asks for anything else ends FAILED).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvloop

from bench.report import add_common_args, emit, now_iso, percentile, process_cpu_s, result
from bench.sdk_ceiling import NoEngine, serving
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.actions import record_action
from sidecar.workflow.events import execution_started_event, task_completed_event, to_timestamp

WARM_UP = 10


@dataclass
class _Instance:
    name: str
    status: int = pb.ORCHESTRATION_STATUS_RUNNING
    output: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def response(self, instance_id: str) -> pb.GetInstanceResponse:
        ws = pb.WorkflowState(instanceId=instance_id, name=self.name)
        ws.workflowStatus = self.status  # type: ignore[assignment]  # an OrchestrationStatus
        now = to_timestamp(time.time_ns() // 1_000_000)
        ws.createdTimestamp.CopyFrom(now)
        ws.lastUpdatedTimestamp.CopyFrom(now)
        if self.output is not None:
            ws.output.value = self.output
        return pb.GetInstanceResponse(exists=True, workflowState=ws)


def _turn_started() -> pb.HistoryEvent:
    event = pb.HistoryEvent(eventId=-1, timestamp=to_timestamp(time.time_ns() // 1_000_000))
    event.workflowStarted.SetInParent()
    return event


class InstantEngine(NoEngine):
    """The no-op server of `sdk-ceiling`, plus instances kept in memory and driven from
    turn to turn as fast as the app answers."""

    def __init__(self) -> None:
        super().__init__()
        self.instances: dict[str, _Instance] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def StartInstance(self, request: Any, context: Any) -> pb.CreateInstanceResponse:
        iid = request.instanceId
        if iid in self.instances:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{iid} exists")
        self.instances[iid] = _Instance(request.name)
        input_ = request.input.value if request.HasField("input") else None
        start = execution_started_event(
            name=request.name, instance_id=iid, execution_id=iid, input=input_,
            now_ms=time.time_ns() // 1_000_000,
        )  # fmt: skip
        task = asyncio.create_task(self._drive(iid, start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pb.CreateInstanceResponse(instanceId=iid)

    async def GetInstance(self, request: Any, context: Any) -> pb.GetInstanceResponse:
        found = self.instances.get(request.instanceId)
        return pb.GetInstanceResponse() if found is None else found.response(request.instanceId)

    async def WaitForInstanceCompletion(self, request: Any, context: Any) -> Any:
        found = self.instances.get(request.instanceId)
        if found is None:
            return pb.GetInstanceResponse()
        await found.done.wait()
        return found.response(request.instanceId)

    async def _drive(self, iid: str, start: pb.HistoryEvent) -> None:
        past: list[pb.HistoryEvent] = []
        new = [_turn_started(), start]
        instance = self.instances[iid]
        while True:
            req = pb.WorkflowRequest(instanceId=iid, pastEvents=past, newEvents=new)
            req.executionId.value = iid
            reply = await self.apps.run_workflow(req)
            past.extend(new)
            scheduled = []
            for action in reply.actions:
                if action.HasField("completeWorkflow"):
                    done = action.completeWorkflow
                    instance.status = done.workflowStatus
                    instance.output = done.result.value if done.HasField("result") else None
                    instance.done.set()
                    return
                if not action.HasField("scheduleTask"):  # not this bench's workflow
                    instance.status = pb.ORCHESTRATION_STATUS_FAILED
                    instance.done.set()
                    return
                event = record_action(action, time.time_ns() // 1_000_000)
                past.append(event)
                scheduled.append(self._activity(iid, event))
            new = [_turn_started(), *await asyncio.gather(*scheduled)]

    async def _activity(self, iid: str, event: pb.HistoryEvent) -> pb.HistoryEvent:
        task = event.taskScheduled
        req = pb.ActivityRequest(name=task.name, taskId=event.eventId)
        req.workflowInstance.instanceId = iid
        req.workflowInstance.executionId.value = iid
        if task.HasField("input"):
            req.input.value = task.input.value
        reply = await self.apps.run_activity(req)
        result = reply.result.value if reply.HasField("result") else None
        return task_completed_event(event.eventId, result, time.time_ns() // 1_000_000)


async def measure(count: int) -> dict[str, Any]:
    hub = InstantEngine()
    async with serving(hub) as (endpoint, app):
        cpu0 = process_cpu_s(os.getpid()), process_cpu_s(app.pid)
        # (subprocess, not the event loop's own spawn: uvloop forks, and gRPC runs here)
        client = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "actorflow", "bench", "latency-floor", "--client", endpoint,
             "--count", str(count)],
            stdout=subprocess.PIPE, check=True, timeout=60 + count,
        )  # fmt: skip
        samples: list[float] = json.loads(client.stdout)
        runs = count + WARM_UP
        server_ms = (process_cpu_s(os.getpid()) - cpu0[0]) * 1000 / runs
        app_ms = (process_cpu_s(app.pid) - cpu0[1]) * 1000 / runs
    return {
        "floor_p50_ms": percentile(samples, 50),
        "floor_p99_ms": percentile(samples, 99),
        "floor_server_cpu_ms_per_workflow": round(server_ms, 3),
        "floor_app_cpu_ms_per_workflow": round(app_ms, 3),
    }


def run_client(endpoint: str, count: int) -> list[float]:
    """`count` one-activity workflows in a row, as `bench latency` runs them (after
    `WARM_UP` more): each one's ms from the start call to the wait call's answer."""
    from dapr.ext.workflow import DaprWorkflowClient

    from bench.workflow_bench import run_one

    host, port = endpoint.rsplit(":", 1)
    client = DaprWorkflowClient(host=host, port=port)
    samples = []
    for i in range(WARM_UP + count):
        wall, output = run_one(client, "single", i)
        if json.loads(output) != 2 * i:  # the activity doubles its input
            raise RuntimeError(f"single({i}) answered {output!r}")
        if i >= WARM_UP:
            samples.append(round(wall * 1000, 3))
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow bench latency-floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--count", type=int, default=200, help="workflows in a row")
    p.add_argument("--client", metavar="HOST:PORT", help=argparse.SUPPRESS)
    add_common_args(p)
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be 1 or more")
    if args.client:  # the client's own process
        print(json.dumps(run_client(args.client, args.count)))
        return 0
    started = now_iso()
    metrics = uvloop.run(measure(args.count))
    emit(result("latency-floor", {"count": args.count}, metrics, started),
         args.json, args.quiet, args.plot)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["InstantEngine", "main", "measure", "run_client"]
