"""`actorflow bench engine`: the engine's own fan-out in one process (actors, router,
store, app connections, a stand-in app), checked to its result, with its CPU figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.engine_bench import _answer
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_the_fan_outs_complete_with_their_sum_and_are_measured(store: str, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "engine", "--n", "20", "300",
         "--repeat", "2", "--store", store, "--json", str(out), "-q"],
        check=True, timeout=120,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["scenario"] == "engine" and data["params"]["store"] == store
    runs = data["metrics"]["runs"]
    assert [r["n"] for r in runs] == [20, 300]
    for run in runs:
        assert len(run["repetitions"]) == 2
        assert run["cpu_us_per_activity"] > 0 and run["activities_per_s"] > 0
        assert run["gc_ms_per_run"] >= 0


def test_the_stand_in_app_answers_as_the_sdk_would() -> None:
    turn = pb.WorkItem(completionToken="t1")
    turn.workflowRequest.instanceId = "i"
    first = _answer(turn, 3)
    assert isinstance(first, pb.WorkflowResponse) and first.completionToken == "t1"
    assert [a.scheduleTask.input.value for a in first.actions] == ["0", "1", "2"]
    activity = pb.WorkItem(completionToken="t2")
    activity.activityRequest.taskId = 2
    activity.activityRequest.input.value = "21"
    done = _answer(activity, 3)
    assert isinstance(done, pb.ActivityResponse) and done.result.value == "42"
    scheduled = pb.HistoryEvent(eventId=1)
    scheduled.taskScheduled.name = "double"
    turn.workflowRequest.pastEvents.append(scheduled)
    assert not _answer(turn, 3).actions  # type: ignore[union-attr]
    for task_id in (1, 2, 3):
        event = turn.workflowRequest.newEvents.add()
        event.taskCompleted.taskScheduledId = task_id
    final = _answer(turn, 3)
    assert isinstance(final, pb.WorkflowResponse)
    assert final.actions[0].completeWorkflow.result.value == "6"
