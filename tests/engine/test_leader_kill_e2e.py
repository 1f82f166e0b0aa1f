"""DESIGN.md 4.1 with the engine's own services: the placement leader, then the reminders
leader, SIGKILLed while workflows run (activities in flight, durable timers pending).
Every workflow ends COMPLETED with its right output, no timer fires early, and a
workflow started after the kill runs too. The killed node is not started again: the
two left are a quorum."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from actorflow import status

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 2}
TIMER_S = 2.0


def _leader(cluster: Any, kind: str) -> str:
    """The process name (`placement-1`...) of the service's leader with a quorum."""

    def found() -> str | None:
        report = asyncio.run(
            status.collect(cluster.info["placement"], cluster.info["reminders"], [])
        )
        nodes = report[kind]
        leaders = [i for i, n in enumerate(nodes) if n["ok"] and n["leader"] and n["quorum"]]
        return f"{kind}-{leaders[0]}" if len(leaders) == 1 else None

    cluster.eventually(f"no {kind} leader", lambda: found() is not None, timeout_s=30)
    name = found()
    assert name is not None
    return name


def _start_mixed(c: DaprWorkflowClient, uid: Any, tag: str) -> tuple[list[str], list[str]]:
    fans = [
        c.schedule_new_workflow("fan", input=40, instance_id=uid(f"{tag}-fan{i}")) for i in range(6)
    ]
    timers = [
        c.schedule_new_workflow("timed", input=TIMER_S, instance_id=uid(f"{tag}-timer{i}"))
        for i in range(6)
    ]
    return fans, timers


def _all_completed(c: DaprWorkflowClient, fans: list[str], timers: list[str]) -> None:
    for iid in fans:
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=90)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) == sum(2 * i for i in range(40))
    for iid in timers:
        state = c.wait_for_workflow_completion(iid, timeout_in_seconds=90)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
        assert json.loads(state.serialized_output) >= TIMER_S  # never early


@pytest.mark.parametrize("kind", ["placement", "reminders"])
def test_a_leader_sigkilled_mid_run_loses_no_workflow(cluster: Any, uid: Any, kind: str) -> None:
    c = cluster.client(0)
    victim = _leader(cluster, kind)
    fans, timers = _start_mixed(c, uid, kind)
    for iid in timers:  # running (their timers armed or being armed) when the kill lands
        c.wait_for_workflow_start(iid, timeout_in_seconds=30)
    cluster.kill_process(victim)
    assert _leader(cluster, kind) != victim
    more_fans, more_timers = _start_mixed(cluster.client(1), uid, f"{kind}-after")
    _all_completed(c, fans + more_fans, timers + more_timers)
