"""`actorflow bench latency-floor`: the latency workflow through the real SDK client and
worker against a server that keeps nothing; and `bench latency` reporting it beside its
own p50."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.latency_floor import InstantEngine
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.events import event_kind


def test_the_floor_runs_each_workflow_to_its_result(tmp_path: Path) -> None:
    # (the client checks every workflow's output: 2 * its input, from the activity)
    out = tmp_path / "floor.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "latency-floor", "--count", "5",
         "--json", str(out), "-q"],
        check=True, timeout=120,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["scenario"] == "latency-floor" and data["params"] == {"count": 5}
    metrics = data["metrics"]
    assert set(metrics) == {
        "floor_p50_ms", "floor_p99_ms", "floor_server_cpu_ms_per_workflow",
        "floor_app_cpu_ms_per_workflow",
    }  # fmt: skip
    assert 0 < metrics["floor_p50_ms"] <= metrics["floor_p99_ms"]
    assert metrics["floor_app_cpu_ms_per_workflow"] > 0  # the SDK app ran the turns


class _App:
    """Stands in for the SDK app: turn 1 schedules `double(3)`, turn 2 completes with
    the activity's result; every request is kept."""

    def __init__(self) -> None:
        self.turns: list[pb.WorkflowRequest] = []
        self.activities: list[pb.ActivityRequest] = []

    async def run_workflow(self, request: pb.WorkflowRequest) -> pb.WorkflowResponse:
        self.turns.append(request)
        action = pb.WorkflowAction(id=1)
        if len(self.turns) == 1:
            action.scheduleTask.name = "double"
            action.scheduleTask.input.value = "3"
        else:
            done = action.completeWorkflow
            done.workflowStatus = pb.ORCHESTRATION_STATUS_COMPLETED
            done.result.value = request.newEvents[-1].taskCompleted.result.value
        return pb.WorkflowResponse(instanceId=request.instanceId, actions=[action])

    async def run_activity(self, request: pb.ActivityRequest) -> pb.ActivityResponse:
        self.activities.append(request)
        reply = pb.ActivityResponse(instanceId=request.workflowInstance.instanceId)
        reply.result.value = str(2 * int(request.input.value))
        return reply


async def test_a_workflow_asking_for_more_than_activities_fails() -> None:
    class _TimerApp(_App):
        async def run_workflow(self, request: pb.WorkflowRequest) -> pb.WorkflowResponse:
            action = pb.WorkflowAction(id=1)
            action.createTimer.fireAt.seconds = 1
            return pb.WorkflowResponse(instanceId=request.instanceId, actions=[action])

    hub = InstantEngine()
    hub.apps = _TimerApp()  # type: ignore[assignment]
    await hub.StartInstance(pb.CreateInstanceRequest(instanceId="w", name="timer"), None)
    reply = await asyncio.wait_for(
        hub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="w"), None), 5
    )
    assert reply.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_FAILED


async def test_the_instant_engine_drives_a_workflow_from_turn_to_turn() -> None:
    hub = InstantEngine()
    app = _App()
    hub.apps = app  # type: ignore[assignment]
    start = pb.CreateInstanceRequest(instanceId="w1", name="single")
    start.input.value = "3"
    await hub.StartInstance(start, None)
    reply = await asyncio.wait_for(
        hub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="w1"), None), 5
    )
    state = reply.workflowState
    assert reply.exists and state.instanceId == "w1" and state.name == "single"
    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert state.output.value == "6"
    assert [a.name for a in app.activities] == ["double"]
    assert app.activities[0].taskId == 1 and app.activities[0].input.value == "3"
    first, second = app.turns
    assert [event_kind(e) for e in first.newEvents] == ["workflowStarted", "executionStarted"]
    # The second turn replays the first's events and the scheduled task, and gets the
    # task's outcome as new.
    assert [event_kind(e) for e in second.pastEvents] == [
        "workflowStarted", "executionStarted", "taskScheduled",
    ]  # fmt: skip
    assert [event_kind(e) for e in second.newEvents] == ["workflowStarted", "taskCompleted"]
    assert second.newEvents[1].taskCompleted.taskScheduledId == 1
    unknown = await hub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="x"), None)
    assert not unknown.exists


def test_bench_latency_reports_the_floor_beside_its_own_p50(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "latency", "--count", "5", "--repeat", "1",
         "--json", str(out), "-q"],
        check=True, timeout=300,
    )  # fmt: skip
    metrics = json.loads(out.read_text())["metrics"]
    sdk_ms = metrics["sdk_round_trips_ms"]
    assert sdk_ms > 0
    assert metrics["floor_over_sdk_round_trips"] == pytest.approx(
        metrics["floor_p50_ms"] / sdk_ms, abs=0.002
    )
    assert metrics["floor_server_cpu_ms_per_workflow"] >= 0
