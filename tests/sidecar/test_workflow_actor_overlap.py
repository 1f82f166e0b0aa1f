"""Work that overlaps a save instead of waiting for it: a new instance's first turn goes
to the app while its start is being saved, and activities are dispatched while the
checkpoint that schedules them is being saved. If the save fails, what went early is
dropped (a refused start) or repeated safely (at-least-once activities)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgpack
import pytest

from sidecar.actors.base import ActorCallError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store.gated import GatedStore
from sidecar.store.memory import MemoryStore
from sidecar.workflow.events import execution_started_event
from sidecar.workflow.testing import complete_action, response, schedule_task_action

ID = "wf-1"


class RecordingRouter:
    """Takes every actor call (activity dispatches) and records its method."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.actors: list[str] = []
        self.called = asyncio.Event()

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.methods.append(method)
        self.actors.append(actor_id)
        self.called.set()
        return b""


def _actor(store: MemoryStore, apps: AppConnections, router: RecordingRouter) -> WorkflowActor:
    return workflow_actor(store, apps, router, ID)


def _start(at_ms: int = 1) -> bytes:
    """A start as an API stamps it on arrival (`at_ms`): another request is another time."""
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=at_ms, parent=None
    )
    return bytes(msgpack.packb({"e": event.SerializeToString()}))


async def _next_turn(stream: AsyncGenerator[pb.WorkItem, None]) -> pb.WorkItem:
    item = await asyncio.wait_for(anext(stream), 10)
    assert item.HasField("workflowRequest")
    return item


async def _until(actor: WorkflowActor, test: Callable[[Any], bool]) -> None:
    """Until a save of the actor's leaves a state that passes `test`."""
    assert await asyncio.wait_for(actor.waits.until(test, actor.state, 10), 11)


async def _started(
    store: MemoryStore, apps: AppConnections, router: RecordingRouter
) -> tuple[WorkflowActor, AsyncGenerator[pb.WorkItem, None], pb.WorkItem]:
    """A new activation that started the instance: the actor, the app's stream, and
    the first turn, taken from the stream and not answered yet."""
    actor = _actor(store, apps, router)
    await actor.on_activate()
    stream = apps.stream()
    await actor.invoke("start", _start())
    return actor, stream, await _next_turn(stream)


async def test_a_new_instance_first_turn_runs_while_its_start_is_saved() -> None:
    store, apps, router = GatedStore(), AppConnections(), RecordingRouter()
    actor = _actor(store, apps, router)
    await actor.on_activate()
    stream = apps.stream()
    store.gate.clear()
    starting = asyncio.create_task(actor.invoke("start", _start()))
    await asyncio.wait_for(store.waiting.wait(), 10)
    # The save is held, and the app already has the first turn and answers it.
    first = await _next_turn(stream)
    assert not starting.done()
    kinds = [e.WhichOneof("eventType") for e in first.workflowRequest.newEvents]
    assert kinds == ["workflowStarted", "executionStarted"]
    done = complete_action(1, pb.ORCHESTRATION_STATUS_COMPLETED, '"done"')
    apps.complete(first.completionToken, response(ID, done))
    store.gate.set()
    assert await asyncio.wait_for(starting, 10) == b""
    # The answer is applied once the start is saved: the instance completes, from that
    # one turn (nothing asked the app again).
    await _until(actor, lambda s: s is not None and s.is_terminal)
    assert actor.state is not None and actor.state.metadata.output == '"done"'
    assert apps.queued_workflows == 0
    await stream.aclose()
    await actor.on_deactivate()


async def test_a_refused_start_drops_its_early_turn() -> None:
    store, apps, router = MemoryStore(), AppConnections(), RecordingRouter()
    first, stream, turn = await _started(store, apps, router)
    apps.complete(turn.completionToken, response(ID, schedule_task_action(1, "a")))
    await asyncio.wait_for(router.called.wait(), 10)  # running: its activity dispatched
    await stream.aclose()
    await first.on_deactivate()
    # Another activation (nothing loaded) gets a start for the same id: its early turn
    # is queued for the app, the conditional write fails, the start is refused, and the
    # queued turn is withdrawn before any app takes it.
    again = _actor(store, apps, router)
    await again.on_activate()
    with pytest.raises(ActorCallError, match="ALREADY_EXISTS"):
        await again.invoke("start", _start(at_ms=2))
    for _ in range(20):  # the early turn's cancellation is delivered
        await asyncio.sleep(0)
    assert apps.queued_workflows == 0
    assert again.state is not None and not again.state.is_terminal
    await again.on_deactivate()


async def test_activities_are_dispatched_while_their_checkpoint_is_saved() -> None:
    store, apps, router = GatedStore(), AppConnections(), RecordingRouter()
    actor, stream, turn = await _started(store, apps, router)
    store.gate.clear()  # the checkpoint of this turn will wait
    apps.complete(turn.completionToken, response(ID, schedule_task_action(1, "a")))
    await asyncio.wait_for(store.waiting.wait(), 10)
    await asyncio.wait_for(router.called.wait(), 10)
    assert router.methods == ["dispatch"]
    assert actor.state is not None and 1 not in actor.state.open.tasks  # not saved yet
    store.gate.set()
    await _until(actor, lambda s: 1 in s.open.tasks)
    await stream.aclose()
    await actor.on_deactivate()


async def test_a_deactivation_lets_the_checkpoint_being_written_land() -> None:
    """Placement moves the instance while its checkpoint is being written: the write
    lands before the activation is gone, so the next owner reads it (it used to be cut
    off with the runner, or with a real store to land after the next owner's read)."""
    store, apps, router = GatedStore(), AppConnections(), RecordingRouter()
    actor, stream, turn = await _started(store, apps, router)
    store.gate.clear()
    apps.complete(turn.completionToken, response(ID, schedule_task_action(1, "a")))
    await asyncio.wait_for(store.waiting.wait(), 10)  # the checkpoint waits at the gate
    leaving = asyncio.ensure_future(actor.on_deactivate())
    for _ in range(20):  # the deactivation runs as far as it can
        await asyncio.sleep(0)
    assert not leaving.done()
    store.gate.set()
    await asyncio.wait_for(leaving, 10)
    await stream.aclose()
    successor = _actor(store, apps, router)
    await successor.on_activate()
    await successor.invoke("get", b"")
    assert successor.state is not None and 1 in successor.state.open.tasks
    await successor.on_deactivate()


async def test_a_save_that_finds_another_write_reloads_and_reissues_what_is_pending() -> None:
    """Two activations of one instance (a move racing a turn): the second saves a turn
    that schedules task 1; the first's next save fails, and it reloads and dispatches
    task 1 itself, since the other's dispatch may never have gone out."""
    store, apps, router = MemoryStore(), AppConnections(), RecordingRouter()
    first, stream, first_turn = await _started(store, apps, router)
    second = _actor(store, apps, router)
    await second.on_activate()
    await second.invoke("get", b"")  # loads, and plans its own turn
    second_turn = await _next_turn(stream)
    apps.complete(second_turn.completionToken, response(ID, schedule_task_action(1, "a")))
    await _until(second, lambda s: 1 in s.open.tasks)
    for _ in range(20):  # its dispatch goes out
        await asyncio.sleep(0)
    task_1 = [a for a in router.actors if a.startswith(f"{ID}::1::")]
    assert len(task_1) == 1
    apps.complete(first_turn.completionToken, response(ID, schedule_task_action(7, "b")))
    await _until(first, lambda s: s is not None and 1 in s.open.tasks)  # reloaded
    assert first.state is not None and 7 not in first.state.open.tasks
    for _ in range(20):  # the re-issued dispatch goes out
        await asyncio.sleep(0)
    assert len([a for a in router.actors if a.startswith(f"{ID}::1::")]) == 2
    await stream.aclose()
    await first.on_deactivate()
    await second.on_deactivate()


async def test_a_recover_during_a_checkpoint_reissues_what_that_checkpoint_schedules() -> None:
    """Placement moves actors while a turn's checkpoint is being written: the activity
    that turn schedules went out early, maybe to the sidecar that is leaving. The
    recover that follows the move re-issues it (it used to read the state from before
    that checkpoint, so the activity was never run again and the workflow stalled;
    found in a live-scaling bench run)."""
    store, apps, router = GatedStore(), AppConnections(), RecordingRouter()
    actor, stream, turn = await _started(store, apps, router)
    store.gate.clear()
    apps.complete(turn.completionToken, response(ID, schedule_task_action(1, "a")))
    await asyncio.wait_for(store.waiting.wait(), 10)  # the checkpoint waits at the gate
    await asyncio.wait_for(router.called.wait(), 10)  # task 1's early dispatch went out
    recovering = asyncio.ensure_future(actor.invoke("recover", b""))
    for _ in range(20):  # the recover runs as far as it can
        await asyncio.sleep(0)
    store.gate.set()
    await asyncio.wait_for(recovering, 10)
    for _ in range(20):  # the re-issued dispatch goes out
        await asyncio.sleep(0)
    assert len([a for a in router.actors if a.startswith(f"{ID}::1::")]) == 2
    await stream.aclose()
    await actor.on_deactivate()
