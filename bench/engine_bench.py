"""`actorflow bench engine`: the workflow engine's own CPU per activity, with no gRPC.

`bench fanout` reports the sidecar's CPU per activity, and most of it is grpc.aio's: the
no-op server of `sdk-ceiling` alone takes about 0.4 ms per activity on this machine, for
one stream message out and one call in. This scenario measures the rest, the part the
engine owns, in one process and with little noise: the sidecar's actor host and router
(one sidecar: every actor is local), its SQLite store (`--store memory` for none) and
its `AppConnections`, fed by a stand-in app in the same event loop that answers every
work item at once (its share, a few microseconds per item, is included).

For each N in `--n`, one workflow fans out N activities, `--repeat` times: the CPU time
of the process (every thread: the event loop and the store's writer) per activity, its
rate, and the time the cyclic collector took (`gc_ms_per_run`, from `gc.callbacks`),
with the sidecar's collector thresholds. Reports the median over the repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import uvloop

from bench.report import add_common_args, emit, median_of, now_iso, result
from placement.client import PlacementClient
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool
from sidecar.actors.router import ActorRouter
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.app import ActorServices
from sidecar.cli import tune_collector
from sidecar.engine.activity_actor import ActivityActor
from sidecar.engine.apps import AppConnections
from sidecar.engine.naming import activity_type, workflow_type
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store.base import StateStore
from sidecar.store.factory import open_store
from sidecar.workflow.events import execution_started_event
from sidecar.workflow.testing import complete_action, response, schedule_task_action

SELF = "engine-bench"
WORKFLOW = workflow_type("default", "app")
ACTIVITY = activity_type("default", "app")


@dataclass(frozen=True)
class _Owner:
    name: str = SELF


@dataclass(frozen=True)
class _Table:
    version: int = 1


class OneHostPlacement:
    """The placement client's face the router uses, for a cluster of this one sidecar."""

    table = _Table()

    async def lookup(
        self, actor_type: str, actor_id: str, namespace: str | None = None, *,
        wait_s: float | None = None,
    ) -> _Owner:  # fmt: skip
        return _Owner()

    async def wait_for_version(self, version: int, timeout: float) -> _Table:
        return self.table


def _answer(item: pb.WorkItem, n: int) -> pb.ActivityResponse | pb.WorkflowResponse:
    """What the SDK would answer for the fan-out workflow and its `double` activity."""
    if item.HasField("activityRequest"):
        req = item.activityRequest
        done = pb.ActivityResponse(
            instanceId=req.workflowInstance.instanceId, taskId=req.taskId,
            completionToken=item.completionToken,
        )  # fmt: skip
        done.result.value = str(int(req.input.value) * 2)
        return done
    turn = item.workflowRequest
    events = [*turn.pastEvents, *turn.newEvents]
    if not any(e.HasField("taskScheduled") for e in events):
        tasks = (schedule_task_action(i + 1, "double", str(i)) for i in range(n))
        answer = response(turn.instanceId, *tasks)
    elif sum(e.HasField("taskCompleted") for e in events) == n:
        final = complete_action(n + 1, pb.ORCHESTRATION_STATUS_COMPLETED, str(n * (n - 1)))
        answer = response(turn.instanceId, final)
    else:
        answer = response(turn.instanceId)  # still waiting on some of its tasks
    answer.completionToken = item.completionToken
    return answer


async def stand_in_app(apps: AppConnections, sizes: dict[str, int]) -> None:
    """Answers every work item as it comes; `sizes` maps an instance to its N."""
    async for item in apps.stream():
        iid = (
            item.activityRequest.workflowInstance.instanceId
            if item.HasField("activityRequest")
            else item.workflowRequest.instanceId
        )
        apps.complete(item.completionToken, _answer(item, sizes[iid]))


@contextmanager
def collector_time() -> Iterator[list[float]]:
    """Seconds spent in the cyclic collector while the block runs (one item, summed)."""
    spent = [0.0]
    began = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - began[0]

    gc.callbacks.append(callback)
    try:
        yield spent
    finally:
        gc.callbacks.remove(callback)


class Engine:
    """The sidecar's actors, router, store and app connections in this process."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.apps = AppConnections()
        self.host = ActorHost(
            {WORKFLOW: WorkflowActor, ACTIVITY: ActivityActor},
            sidecar=SELF, services=None, owns=lambda actor_type, actor_id: 1,
        )  # fmt: skip
        placement = cast(PlacementClient, OneHostPlacement())
        self.router = ActorRouter(placement, self.host, PeerPool(None), SELF)
        self.host.services = ActorServices(
            store, self.router, "app", "default", None, self.apps, None
        )
        self.sizes: dict[str, int] = {}

    async def fan_out(self, n: int) -> None:
        iid = f"engine-{n}-{time.time_ns()}"
        self.sizes[iid] = n
        start = execution_started_event(
            name="fanout", instance_id=iid, execution_id="", input=str(n),
            now_ms=time.time_ns() // 1_000_000,
        )  # fmt: skip
        started = msgpack.packb({"e": start.SerializeToString()})
        await self.router.call(WORKFLOW, iid, "start", started)
        wait = msgpack.packb({"test": "completed", "io": True, "s": 60})
        answer: dict[str, Any] = {"passed": False}
        while not answer["passed"]:  # each call is held up to 60 s
            answer = msgpack.unpackb(await self.router.call(WORKFLOW, iid, "wait", wait))
        state = pb.GetInstanceResponse.FromString(answer["r"]).workflowState
        if (state.workflowStatus, state.output.value) != (
            pb.ORCHESTRATION_STATUS_COMPLETED, str(n * (n - 1))
        ):  # fmt: skip
            raise RuntimeError(f"fan-out of {n} ended {state.workflowStatus}: {state.output.value}")

    async def measure(self, n: int) -> dict[str, Any]:
        with collector_time() as collected:
            cpu, wall = time.process_time(), time.perf_counter()
            await self.fan_out(n)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {
            "n": n, "cpu_us_per_activity": round(cpu * 1e6 / n, 1),
            "activities_per_s": round(n / wall, 1), "gc_ms_per_run": round(collected[0] * 1000, 1),
        }  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tune_collector()  # as the sidecar does
    with tempfile.TemporaryDirectory(prefix="af-bench-engine-") as tmp:
        url = f"sqlite://{Path(tmp) / 'state.db'}" if args.store == "sqlite" else "memory://"
        store = await open_store(url)
        engine = Engine(store)
        app = asyncio.get_running_loop().create_task(stand_in_app(engine.apps, engine.sizes))
        try:
            await engine.fan_out(100)  # warm-up
            runs = []
            for n in args.n:
                reps = [await engine.measure(n) for _ in range(args.repeat)]
                runs.append(median_of(reps))
        finally:
            app.cancel()
            await engine.host.deactivate_all()
            await store.close()
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow bench engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, nargs="+", default=[1000, 5000], help="fan-out sizes")
    p.add_argument("--repeat", type=int, default=5, help="runs per N (the median is reported)")
    p.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    add_common_args(p)
    args = p.parse_args(argv)
    started = now_iso()
    metrics = uvloop.run(run(args))
    params = {"n": args.n, "repeat": args.repeat, "store": args.store}
    emit(result("engine", params, metrics, started), args.json, args.quiet, args.plot)
    return 0
