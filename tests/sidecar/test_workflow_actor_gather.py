"""Turns of a big fan-out: after a turn that changed nothing (the workflow waits on its
tasks), completions gather until every open task has its outcome or a bounded hold ends,
instead of one whole-history replay per handful of completions; anything else (an
external event here) ends the hold at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import msgpack

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.engine.workflow_runner import COALESCE_MIN_OPEN
from sidecar.store.memory import MemoryStore
from sidecar.workflow.events import execution_started_event, raised_event, task_completed_event
from sidecar.workflow.testing import response, schedule_task_action

ID = "wf-1"
TASKS = COALESCE_MIN_OPEN + 24
SLOW_TURN_S = 0.5  # the app's answer to the turn that changes nothing; the hold is 8x


class NullRouter:
    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        return b""


def _actor(store: MemoryStore, apps: AppConnections) -> WorkflowActor:
    return workflow_actor(store, apps, NullRouter(), ID)


def _payload(event: pb.HistoryEvent, *, durable: bool = False) -> bytes:
    return bytes(msgpack.packb({"e": event.SerializeToString(), "durable": durable}))


async def _complete(actor: WorkflowActor, task_ids: Iterable[int]) -> None:
    for task_id in task_ids:
        await actor.invoke("event", _payload(task_completed_event(task_id, '"ok"', 2)))


async def _next_turn(stream: AsyncGenerator[pb.WorkItem, None]) -> pb.WorkItem:
    item = await asyncio.wait_for(anext(stream), 10)
    assert item.HasField("workflowRequest")
    return item


def _kinds(item: pb.WorkItem) -> list[str]:
    return [str(e.WhichOneof("eventType")) for e in item.workflowRequest.newEvents]


def _completed(item: pb.WorkItem) -> set[int]:
    return {
        e.taskCompleted.taskScheduledId
        for e in item.workflowRequest.newEvents
        if e.HasField("taskCompleted")
    }


Stream = AsyncGenerator[pb.WorkItem, None]


async def _until(actor: WorkflowActor, test: Callable[[Any], bool]) -> None:
    """Until a save of the actor's leaves a state that passes `test`."""
    assert await asyncio.wait_for(actor.waits.until(test, actor.state, 10), 11)


async def _blocked_fan_out() -> tuple[WorkflowActor, Stream]:
    """An instance that scheduled TASKS activities, got the first five back, and whose
    app answered the turn carrying them slowly and with no action (the workflow waits
    on all of them); its actor, and the app's stream of work items."""
    apps = AppConnections()
    actor = _actor(MemoryStore(), apps)
    await actor.on_activate()
    stream = apps.stream()
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", bytes(msgpack.packb({"e": start.SerializeToString()})))
    first = await _next_turn(stream)
    scheduled = [schedule_task_action(i, "a") for i in range(1, TASKS + 1)]
    apps.complete(first.completionToken, response(ID, *scheduled))
    await _until(actor, lambda s: s is not None and len(s.open.tasks) >= TASKS)
    await _complete(actor, range(1, 6))
    second = await _next_turn(stream)
    assert _completed(second) == set(range(1, 6))
    await asyncio.sleep(SLOW_TURN_S)  # the app's replay of a long history, say
    apps.complete(second.completionToken, response(ID))
    await _until(actor, lambda s: len(s.open.tasks) <= TASKS - 5)
    return actor, stream


async def _next_turn_held(stream: Stream) -> asyncio.Future[pb.WorkItem]:
    """The next turn, checked not to go out while the hold lasts (it lasts 8x the slow
    turn; this waits 2x)."""
    turn = asyncio.ensure_future(_next_turn(stream))
    done, _ = await asyncio.wait({turn}, timeout=2 * SLOW_TURN_S)
    assert not done, "a turn went out during the hold"
    return turn


async def test_after_a_turn_that_changed_nothing_completions_wait_for_the_rest() -> None:
    actor, stream = await _blocked_fan_out()
    await _complete(actor, range(6, TASKS))  # all but the last
    third = await _next_turn_held(stream)
    await _complete(actor, [TASKS])  # the last: no reason to wait any longer
    item = await asyncio.wait_for(third, 3)
    assert _completed(item) == set(range(6, TASKS + 1))  # one replay for all of them
    await stream.aclose()
    await actor.on_deactivate()


async def test_an_external_event_ends_the_hold_at_once() -> None:
    actor, stream = await _blocked_fan_out()
    await _complete(actor, range(6, 9))
    third = await _next_turn_held(stream)
    event = raised_event("approval", '"yes"', 3)
    await actor.invoke("event", _payload(event, durable=True))
    item = await asyncio.wait_for(third, 3)  # the hold would last 4 s
    assert "eventRaised" in _kinds(item)
    assert _completed(item) == {6, 7, 8}
    await stream.aclose()
    await actor.on_deactivate()
