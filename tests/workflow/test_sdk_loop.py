"""The core against the REAL SDK executor, without gRPC.

Each turn planned by `plan_turn` is serialized to bytes, parsed as the SDK's own
`WorkflowRequest` and run by the SDK's `_OrchestrationExecutor` with generator
workflows written against `DaprWorkflowContext`; the SDK's actions come back as bytes
into our `WorkflowResponse`. Activities are plain functions run by the test, through the
activity actor's pure part. Every checkpoint goes through a dict store and is reloaded
with `load_state`, which must give back the same state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowContext, when_all
from dapr.ext.workflow._durabletask import worker as sdk_worker
from dapr.ext.workflow._durabletask.internal import protos as sdk_pb

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import StoreLimits
from sidecar.workflow import (
    Completed,
    DispatchActivity,
    Effect,
    NotifyParent,
    ScheduleTimer,
    SendEvent,
    StartChild,
    StoredLayout,
    TerminateInstance,
    WorkflowState,
    add_events,
    apply_response,
    complete,
    execution_started_event,
    layout_of,
    load_state,
    new_activity,
    new_state,
    plan_checkpoint,
    plan_turn,
    raised_event,
    settle,
    store_key,
    terminated_event,
    timer_fired_event,
)
from sidecar.workflow.testing import DictStore

APP = "app"
WF_TYPE = "dapr.internal.default.app.workflow"
T0 = 1_700_000_000_000
Workflow = Callable[[DaprWorkflowContext, Any], Any]


class SdkApp:
    """The app side: the SDK's registry and executor, spoken to in bytes only."""

    def __init__(self) -> None:
        self.registry = sdk_worker._Registry()
        self.activities: dict[str, Callable[[Any], Any]] = {}
        self.turns = 0

    def workflow(self, name: str, fn: Workflow) -> None:
        def wrapper(ctx: Any, inp: Any) -> Any:
            return fn(DaprWorkflowContext(ctx), inp)

        self.registry.add_named_orchestrator(name, wrapper)

    def run_workflow(self, request: pb.WorkflowRequest) -> pb.WorkflowResponse:
        self.turns += 1
        req = sdk_pb.WorkflowRequest.FromString(request.SerializeToString())
        executor = sdk_worker._OrchestrationExecutor(self.registry, logging.getLogger("sdk"))
        result = executor.execute(req.instanceId, req.pastEvents, req.newEvents)
        res = sdk_pb.WorkflowResponse(instanceId=req.instanceId, actions=result.actions)
        if result.encoded_custom_status is not None:
            res.customStatus.value = result.encoded_custom_status
        return pb.WorkflowResponse.FromString(res.SerializeToString())

    def run_activity(self, request: pb.ActivityRequest) -> pb.ActivityResponse:
        res = pb.ActivityResponse(instanceId=request.workflowInstance.instanceId)
        res.taskId = request.taskId
        try:
            arg = json.loads(request.input.value) if request.HasField("input") else None
            out = self.activities[request.name](arg)
        except Exception as exc:
            res.failureDetails.errorType = type(exc).__name__
            res.failureDetails.errorMessage = str(exc)
        else:
            if out is not None:
                res.result.value = json.dumps(out)
        return res


@dataclass
class Cluster:
    """A one-process stand-in for the workflow and activity actors (the shell)."""

    app: SdkApp
    limits: StoreLimits = field(default_factory=lambda: StoreLimits(128, 1 << 20))
    now: int = T0
    store: DictStore = field(init=False)
    states: dict[str, WorkflowState] = field(default_factory=dict)
    layouts: dict[str, StoredLayout] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    activities: list[DispatchActivity] = field(default_factory=list)
    timers: list[ScheduleTimer] = field(default_factory=list)
    completed: dict[str, Completed] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = DictStore(self.limits)

    def start(self, instance_id: str, name: str, data: Any) -> None:
        event = execution_started_event(
            name=name,
            instance_id=instance_id,
            execution_id=f"{instance_id}@1",
            input=json.dumps(data),
            now_ms=self.now,
        )
        self.deliver(instance_id, [event])

    def deliver(self, instance_id: str, events: list[pb.HistoryEvent], **tag: Any) -> None:
        state = self.states.get(instance_id) or new_state(instance_id)
        self.save(add_events(state, events, **tag))
        self.pump(instance_id)

    def save(self, state: WorkflowState) -> None:
        before = self.layouts.get(state.instance_id, StoredLayout())
        plan = plan_checkpoint(before, state, APP, WF_TYPE, self.limits)
        version = self.store.run(plan, self.versions.get(state.instance_id, 0))
        self.versions[state.instance_id] = version
        self.layouts[state.instance_id] = plan.layout
        self.states[state.instance_id] = state
        rows = self.store.rows(store_key(APP, WF_TYPE, state.instance_id, ""))
        assert load_state(rows) == state
        assert layout_of(state) == plan.layout

    def pump(self, instance_id: str) -> None:
        while True:
            state = self.states[instance_id]
            settled = settle(state, self.now)
            if settled is not None:
                self.save(settled.state)
                self.carry_out(settled.effects)
                continue
            turn = plan_turn(state, self.now)
            if turn is None:
                return
            res = self.app.run_workflow(turn.full_request())
            result = apply_response(state, turn, res, self.now)
            self.save(result.state)
            self.carry_out(result.effects)

    def carry_out(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            self.effects.append(effect)
            match effect:
                case DispatchActivity():
                    self.activities.append(effect)
                case ScheduleTimer():
                    self.timers.append(effect)
                case Completed():
                    self.completed[effect.instance_id] = effect
                case StartChild() | SendEvent() | TerminateInstance():
                    self.deliver(effect.instance_id, [effect.event])
                case NotifyParent():
                    parent = effect.parent
                    self.deliver(
                        parent.instance_id, [effect.event], execution_id=parent.execution_id
                    )
                case _:
                    raise AssertionError(f"unexpected effect {effect}")

    def run_activities(
        self, order: Callable[[list[DispatchActivity]], list[Any]] = list, *, fold: bool = False
    ) -> int:
        """Run every dispatched activity (in `order`) and deliver each outcome, one turn
        per outcome, or with `fold` all of a batch at once (events that arrive while a
        turn runs are folded into the next one); count them."""
        ran = 0
        while self.activities:
            batch, self.activities = self.activities, []
            notes = []
            for dispatch in order(batch):
                self.now += 1
                outcome = self.app.run_activity(dispatch.request())
                _, notify = complete(new_activity(dispatch), outcome, self.now)
                assert notify is not None
                notes.append(notify)
                ran += 1
            for notify in notes if not fold else []:
                self.deliver(notify.instance_id, [notify.event], generation=notify.generation)
            if fold and notes:
                state = self.states[notes[0].instance_id]
                events = [n.event for n in notes]
                self.deliver(state.instance_id, events, generation=notes[0].generation)
        return ran

    def fire_timers(self) -> None:
        while self.timers:
            timer = min(self.timers, key=lambda t: t.fire_at_ms)
            self.timers.remove(timer)
            self.now = max(self.now, timer.fire_at_ms)
            event = timer_fired_event(timer.timer_id, timer.fire_at_ms, self.now)
            self.deliver(timer.instance_id, [event], generation=timer.generation)


def fan_out_fan_in(ctx: DaprWorkflowContext, n: int) -> Generator[Any, Any, Any]:
    squares = yield when_all([ctx.call_activity("square", input=i) for i in range(n)])
    yield ctx.create_timer(timedelta(seconds=5))
    approval = yield ctx.wait_for_external_event("Approval")
    ctx.set_custom_status("approved")
    return {"sum": sum(squares), "approval": approval}


@pytest.fixture
def app() -> SdkApp:
    sdk = SdkApp()
    sdk.activities["square"] = lambda x: x * x
    sdk.workflow("fan", fan_out_fan_in)
    return sdk


def test_fan_out_fan_in_timer_and_event_to_completion(app: SdkApp) -> None:
    cluster = Cluster(app)
    cluster.start("wf-1", "fan", 10)
    state = cluster.states["wf-1"]
    assert state.status == pb.ORCHESTRATION_STATUS_RUNNING
    # One turn dispatches all ten: the fan-out is never one by one.
    assert [a.task_id for a in cluster.activities] == list(range(1, 11))
    assert app.turns == 1
    # Completions in reverse order, a raise that arrives early is buffered by the SDK.
    cluster.deliver("wf-1", [raised_event("approval", json.dumps("yes"), cluster.now)])
    assert cluster.run_activities(lambda batch: batch[::-1]) == 10
    assert len(cluster.timers) == 1  # the optional timer of the indefinite wait is not one
    cluster.fire_timers()
    done = cluster.completed["wf-1"]
    assert done.status == pb.ORCHESTRATION_STATUS_COMPLETED
    assert json.loads(done.output or "") == {"sum": 285, "approval": "yes"}
    final = cluster.states["wf-1"]
    assert final.custom_status == "approved"  # the SDK sends a str status as is
    assert final.inbox == ()


def test_duplicated_completions_are_dropped(app: SdkApp) -> None:
    cluster = Cluster(app)
    cluster.start("wf-2", "fan", 3)
    batch = list(cluster.activities)
    cluster.run_activities(lambda b: b + b)  # every completion delivered twice
    state = cluster.states["wf-2"]
    completions = [e for e in state.history if e.HasField("taskCompleted")]
    assert sorted(e.taskCompleted.taskScheduledId for e in completions) == [1, 2, 3]
    assert len(batch) == 3
    assert state.status == pb.ORCHESTRATION_STATUS_RUNNING


def test_big_fan_out_checkpoints_in_chunks(app: SdkApp) -> None:
    cluster = Cluster(app, limits=StoreLimits(128, 1 << 20))
    cluster.start("wf-big", "fan", 1000)
    assert len(cluster.activities) == 1000
    assert cluster.store.transactions > 8  # 1000 history rows do not fit 128-op chunks
    cluster.run_activities(fold=True)
    assert app.turns == 2
    cluster.deliver("wf-big", [raised_event("Approval", '"ok"', cluster.now)])
    cluster.fire_timers()
    assert cluster.completed["wf-big"].status == pb.ORCHESTRATION_STATUS_COMPLETED


def failing(ctx: DaprWorkflowContext, _: Any) -> Generator[Any, Any, Any]:
    yield ctx.call_activity("boom", input=1)
    return "unreachable"


def test_activity_failure_fails_the_workflow_with_details() -> None:
    sdk = SdkApp()

    def boom(_: Any) -> Any:
        raise ValueError("kaput")

    sdk.activities["boom"] = boom
    sdk.workflow("failing", failing)
    cluster = Cluster(sdk)
    cluster.start("wf-f", "failing", None)
    cluster.run_activities()
    done = cluster.completed["wf-f"]
    assert done.status == pb.ORCHESTRATION_STATUS_FAILED
    assert done.failure is not None
    assert "kaput" in done.failure.errorMessage
    meta = cluster.states["wf-f"].metadata.failure_details()
    assert meta is not None and "kaput" in meta.errorMessage


def counter(ctx: DaprWorkflowContext, n: int) -> Generator[Any, Any, Any]:
    value = yield ctx.call_activity("square", input=n)
    if n >= 3:
        return value
    ctx.continue_as_new(n + 1)
    return None


def test_continue_as_new_runs_each_generation(app: SdkApp) -> None:
    app.workflow("counter", counter)
    cluster = Cluster(app)
    cluster.start("wf-can", "counter", 1)
    cluster.run_activities()
    state = cluster.states["wf-can"]
    assert state.generation == 3
    assert cluster.completed["wf-can"].output == "9"
    assert [e.WhichOneof("eventType") for e in state.history][:2] == [
        "workflowStarted",
        "executionStarted",
    ]


def parent(ctx: DaprWorkflowContext, n: int) -> Generator[Any, Any, Any]:
    results = yield when_all(
        [ctx.call_child_workflow("fan", input=n, instance_id=f"child-{i}") for i in range(2)]
    )
    return [r["sum"] for r in results]


def test_child_workflows_report_to_their_parent(app: SdkApp) -> None:
    app.workflow("parent", parent)
    cluster = Cluster(app)
    cluster.start("wf-p", "parent", 3)
    assert {"child-0", "child-1"} <= set(cluster.states)
    cluster.run_activities()
    for child in ("child-0", "child-1"):
        cluster.deliver(child, [raised_event("Approval", "1", cluster.now)])
    cluster.fire_timers()
    done = cluster.completed["wf-p"]
    assert done.status == pb.ORCHESTRATION_STATUS_COMPLETED
    assert json.loads(done.output or "") == [5, 5]


def test_recursive_terminate_stops_the_children(app: SdkApp) -> None:
    app.workflow("parent", parent)
    cluster = Cluster(app)
    cluster.start("wf-t", "parent", 2)
    cluster.deliver("wf-t", [terminated_event('"stop"', cluster.now, recurse=True)])
    for instance in ("wf-t", "child-0", "child-1"):
        assert cluster.completed[instance].status == pb.ORCHESTRATION_STATUS_TERMINATED
    assert cluster.completed["wf-t"].output == '"stop"'
    # Late activity completions of the terminated children change nothing.
    before = dict(cluster.states)
    cluster.run_activities()
    assert cluster.states == before
