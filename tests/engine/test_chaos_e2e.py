"""DESIGN.md 4.1 over several crashes in a row: three sidecars (each with its SDK app),
workflows of every shape started in waves (fan-outs, durable timers, child workflows,
waits for events, a suspended one), and after each wave a sidecar other than the
client's is SIGKILLed, then started again once placement has dropped it. Every workflow
ends with its right output: none lost, no timer early, the children's results and the
caught failure in place, each waiting workflow given the event raised to it, each
suspended one still suspended after the kills and finishing once resumed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from actorflow import status

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 3}
ROUNDS = 4
TIMER_S = 1.0
VERSION = "actorflow_placement_table_version"


def _healthy(http: str) -> bool:
    return bool(asyncio.run(status.collect([], [], [http]))["sidecars"][0]["ok"])


def _wave(c: DaprWorkflowClient, uid: Any, i: int) -> dict[str, tuple[str, Any]]:
    """Instance id -> (shape, what it was given)."""
    started: dict[str, tuple[str, Any]] = {}
    for shape, given in (("fan", 30), ("fan", 5), ("timed", TIMER_S), ("parent", {}),
                         ("waits", None), ("held", None)):  # fmt: skip
        workflow = "waits" if shape == "held" else shape
        iid = c.schedule_new_workflow(workflow, input=given, instance_id=uid(f"chaos{i}-{shape}"))
        started[iid] = (shape, given)
    return started


def _check(c: DaprWorkflowClient, iid: str, shape: str, given: Any) -> None:
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, (iid, state)
    out = json.loads(state.serialized_output)
    if shape == "fan":
        assert out == sum(2 * i for i in range(given)), iid
    elif shape == "timed":
        assert out >= TIMER_S, iid  # never early
    elif shape == "parent":
        named, derived = out["results"]
        assert named == {"id": f"{iid}-c1", "value": 2} and derived["value"] == 4, out
        assert out["caught"] and "failed" in out["caught"], out
    else:  # waits, held
        assert out == {"wave": iid}, iid


def _kill_and_restart(cluster: Any, index: int) -> None:
    name = f"sidecar-{index}"
    version = cluster.metric(VERSION)
    again = cluster.kill_process(name)
    cluster.eventually(
        f"placement never dropped {name}", lambda: cluster.metric(VERSION) > version, 30
    )
    again()
    http = cluster.info["sidecars"][index]["http"]
    cluster.eventually(f"{name} never came back", lambda: _healthy(http), timeout_s=60)


def test_sidecars_killed_one_after_another_lose_no_workflow(cluster: Any, uid: Any) -> None:
    c = cluster.client(0)  # sidecar 0 is never killed: the client's
    started: dict[str, tuple[str, Any]] = {}
    for i in range(ROUNDS):
        wave = _wave(c, uid, i)
        for iid, (shape, _) in wave.items():
            c.wait_for_workflow_start(iid, timeout_in_seconds=60)
            if shape == "held":
                c.pause_workflow(iid)
        started.update(wave)
        _kill_and_restart(cluster, 1 + i % 2)
    for iid, (shape, _) in started.items():
        if shape in ("waits", "held"):
            c.raise_workflow_event(iid, "release", data={"wave": iid})
    for iid, (shape, _) in started.items():
        if shape == "held":  # the event waits in its inbox until it is resumed
            state = c.get_workflow_state(iid)
            assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED, iid
            c.resume_workflow(iid)
    for iid, (shape, given) in started.items():
        _check(c, iid, shape, given)
