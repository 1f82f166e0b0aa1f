"""`EffectRunner`: at most MAX_IN_FLIGHT effects of an activation at a time, so a big
fan-out streams to the app instead of routing every dispatch before the first runs; a
failing effect backs off without holding a worker; `close` stops everything; a child
whose start is refused fails its task in the parent, but one whose target met a store
outage is tried again; effects not carried out yet keep their actor busy (the idle sweep
would drop them)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from sidecar.actors.base import ActorCallError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine import effects as effects_module
from sidecar.engine.apps import AppConnections
from sidecar.engine.effects import MAX_IN_FLIGHT, EffectRunner
from sidecar.engine.testing import workflow_actor
from sidecar.store.memory import MemoryStore
from sidecar.workflow import (
    DispatchActivity,
    NotifyParent,
    ParentInfo,
    ScheduleTimer,
    SendEvent,
    StartChild,
    TerminateInstance,
)


def _dispatch(task_id: int) -> DispatchActivity:
    return DispatchActivity(
        instance_id="wf", execution_id="e", generation=1, task_id=task_id, name="a",
        input=None, task_execution_id=f"te{task_id}", target_app_id="", version="", fresh=True,
    )  # fmt: skip


@dataclass
class Router:
    """Counts calls in flight; holds each until `release` is set; fails the actor ids
    in `failing` (an unreachable target)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    failing: set[str] = field(default_factory=set)
    in_flight: int = 0
    most: int = 0
    done: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.attempts[actor_id] = self.attempts.get(actor_id, 0) + 1
        self.changed.set()
        if actor_id in self.failing:
            raise ConnectionError("unreachable")
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        self.done.append(actor_id)
        self.changed.set()
        return b""


@dataclass
class Services:
    router: Router
    namespace: str = "default"
    app_id: str = "app"


class Owner:
    source_app = "app"

    def kick(self) -> None:
        return None


async def _until(router: Router, predicate: Any) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            router.changed.clear()
            await router.changed.wait()


async def test_a_big_fan_out_runs_at_most_max_in_flight_at_a_time() -> None:
    router = Router()
    runner = EffectRunner(Services(router), Owner())
    n = 3 * MAX_IN_FLIGHT + 5
    runner.start([_dispatch(i) for i in range(n)])
    await _until(router, lambda: router.in_flight == MAX_IN_FLIGHT)
    assert len(router.attempts) == MAX_IN_FLIGHT  # the rest wait, not started
    router.release.set()
    await _until(router, lambda: len(router.done) == n)
    assert router.most == MAX_IN_FLIGHT
    assert sorted(router.done) == sorted(_dispatch(i).actor_id for i in range(n))
    await runner.close()


async def test_a_failing_effect_backs_off_without_holding_a_worker(monkeypatch: Any) -> None:
    router = Router()
    router.release.set()
    bad = [_dispatch(i) for i in range(MAX_IN_FLIGHT)]
    router.failing = {d.actor_id for d in bad}
    runner = EffectRunner(Services(router), Owner())
    runner.start(bad)
    await _until(router, lambda: all(router.attempts.get(d.actor_id) for d in bad))
    # Every worker has met a failure; a healthy effect still goes through at once,
    # while the failing ones wait out their backoff.
    good = _dispatch(10_000)
    runner.start([good])
    await _until(router, lambda: good.actor_id in router.done)
    # And the failing ones are tried again once they recover.
    router.failing.clear()
    await _until(router, lambda: len(router.done) == MAX_IN_FLIGHT + 1)
    assert all(router.attempts[d.actor_id] >= 2 for d in bad)
    await runner.close()


async def test_close_cancels_running_and_backing_off_effects(monkeypatch: Any) -> None:
    monkeypatch.setattr(effects_module, "RETRY_MAX_S", 0.05)
    router = Router()
    waiting, failing = _dispatch(1), _dispatch(2)
    router.failing = {failing.actor_id}
    runner = EffectRunner(Services(router), Owner())
    runner.start([waiting, failing])
    await _until(router, lambda: router.in_flight == 1 and failing.actor_id in router.attempts)
    await runner.close()
    assert router.in_flight == 0  # the held call was cancelled
    tried = dict(router.attempts)
    runner.start([_dispatch(3)])  # a closed runner starts nothing
    router.release.set()
    router.changed.clear()
    with pytest.raises(TimeoutError):  # several backoff periods: no call at all
        async with asyncio.timeout(0.3):
            await router.changed.wait()
    assert router.attempts == tried and router.done == []


async def _settled(runner: EffectRunner) -> None:
    """Until nothing is outstanding: a worker leaves in the step after its last call."""
    async with asyncio.timeout(10):
        while runner.outstanding():
            await asyncio.sleep(0)


async def test_effects_not_carried_out_yet_are_outstanding() -> None:
    """Queued, running and backing-off effects are outstanding; none is once every
    effect is carried out."""
    router = Router()
    runner = EffectRunner(Services(router), Owner())
    assert not runner.outstanding()
    failing, held = _dispatch(1), _dispatch(2)
    router.failing = {failing.actor_id}
    runner.start([failing, held])
    assert runner.outstanding()
    await _until(router, lambda: router.attempts.get(failing.actor_id, 0) >= 2)
    assert runner.outstanding()  # one held at its target, one between two tries
    router.failing.clear()
    router.release.set()
    await _until(router, lambda: len(router.done) == 2)
    await _settled(runner)
    await runner.close()


async def test_a_workflow_whose_timer_is_not_armed_yet_is_busy() -> None:
    """A timer's reminder that cannot be created yet (the reminders service out of
    reach) keeps the workflow actor busy: deactivated, nothing would create it until
    something else touched the instance, and the workflow would wait for ever."""
    actor = workflow_actor(MemoryStore(), AppConnections(), Router(), "wf")
    assert not actor.busy()
    # This actor has no reminders client: every attempt fails, as with none reachable.
    actor.effects.start([ScheduleTimer("wf", 1, 1, fire_at_ms=0)])
    assert actor.busy()  # (between attempts too: the runner's test above)
    await actor.on_deactivate()
    assert not actor.busy()


@dataclass
class RefusingRouter:
    """Refuses every child start, as a child's actor does for a start over the store's
    limit; records every other call."""

    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.changed.set()
        if method == "start":
            raise ActorCallError("RESOURCE_EXHAUSTED: the start event is 900000 bytes")
        self.calls.append((actor_type, actor_id, method, msgpack.unpackb(payload)))
        return b""


async def test_a_refused_child_start_fails_the_childs_task_in_its_parent() -> None:
    router = RefusingRouter()
    runner = EffectRunner(Services(router), Owner())  # type: ignore[arg-type]
    parent = ParentInfo(instance_id="p", execution_id="pe", task_scheduled_id=5, app_id="app")
    start = pb.HistoryEvent()
    start.executionStarted.name = "child"
    runner.start([StartChild(instance_id="c", name="child", event=start, parent=parent)])
    async with asyncio.timeout(10):
        while not router.calls:
            router.changed.clear()
            await router.changed.wait()
    [(actor_type, actor_id, method, payload)] = router.calls
    assert (actor_type, actor_id, method) == ("dapr.internal.default.app.workflow", "p", "event")
    assert payload["exec"] == "pe"
    failed = pb.HistoryEvent.FromString(payload["e"]).childWorkflowInstanceFailed
    assert failed.taskScheduledId == 5
    assert failed.failureDetails.errorType == "ChildWorkflowNotStarted"
    assert "RESOURCE_EXHAUSTED" in failed.failureDetails.errorMessage
    await runner.close()


@dataclass
class OutageRouter:
    """Every call fails `outages` times as a target whose store is out of reach does
    (the actor host's `Type: message`, through a peer sidecar, or from its activation),
    then succeeds; records the calls that succeed."""

    outages: int = 2
    seen: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.changed.set()
        n = self.seen[actor_id] = self.seen.get(actor_id, 0) + 1
        if n == 1:
            raise ActorCallError(
                "ActorCallError: StoreUnavailableError: etcd txn: no endpoint answered"
            )
        if n <= self.outages:
            raise ActorCallError("activation failed: StoreUnavailableError('etcd range')")
        self.calls.append((actor_id, method))
        return b""


async def test_a_target_whose_store_is_out_of_reach_is_tried_again(monkeypatch: Any) -> None:
    """A child's start, an event, a terminate and a parent's notification whose target
    could not reach its store are carried out once it can: no failure is made of it
    (the partition chaos of 2026-11-29 failed two parents with ChildWorkflowNotStarted)."""
    monkeypatch.setattr(effects_module, "RETRY_MAX_S", 0.05)
    router = OutageRouter()
    runner = EffectRunner(Services(router), Owner())  # type: ignore[arg-type]
    parent = ParentInfo(instance_id="p", execution_id="pe", task_scheduled_id=5, app_id="app")
    start = pb.HistoryEvent()
    start.executionStarted.name = "child"
    event = pb.HistoryEvent()
    event.eventRaised.name = "go"
    runner.start([
        StartChild(instance_id="c", name="child", event=start, parent=parent),
        SendEvent(instance_id="e", event=event),
        TerminateInstance(instance_id="t", event=event),
        NotifyParent(parent=parent, event=event),
    ])  # fmt: skip
    async with asyncio.timeout(10):
        while len(router.calls) < 4:
            router.changed.clear()
            await router.changed.wait()
    await _settled(runner)
    assert sorted(router.calls) == [("c", "start"), ("e", "event"), ("p", "event"), ("t", "event")]
    assert router.seen == {"c": 3, "e": 3, "t": 3, "p": 3}  # no failure sent to the parent
    await runner.close()
