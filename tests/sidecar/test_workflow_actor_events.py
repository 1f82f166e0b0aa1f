"""The workflow actor keeps every event that arrives while a checkpoint is being saved,
whatever else reads the instance meanwhile (a status query, a waiting client).

Found under load: completions were folded into the in-memory state by a status read
while a save was in flight, and the save then replaced that state, losing them; the
workflow waited forever for an activity that had finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import msgpack
import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store.gated import GatedStore
from sidecar.store.memory import MemoryStore
from sidecar.workflow import WorkflowError
from sidecar.workflow.events import execution_started_event, task_completed_event
from sidecar.workflow.testing import response, schedule_task_action

ID = "wf-1"


class NoRouter:
    """Effects (activity dispatches) go nowhere; this test plays the activities."""

    async def call(self, *args: Any, **kwargs: Any) -> bytes:
        await asyncio.Event().wait()  # never answers
        return b""


async def _activated(store: MemoryStore, apps: AppConnections) -> WorkflowActor:
    """A workflow actor of instance ID on `store`, its work items going to `apps`."""
    actor = workflow_actor(store, apps, NoRouter(), ID)
    await actor.on_activate()
    return actor


async def _next_turn(stream: AsyncGenerator[pb.WorkItem, None]) -> pb.WorkItem:
    while True:
        item = await asyncio.wait_for(anext(stream), 10)
        if item.HasField("workflowRequest"):
            return item


async def test_completions_during_a_save_reach_the_next_turn() -> None:
    store, apps = GatedStore(), AppConnections()
    actor = await _activated(store, apps)
    stream = apps.stream()
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", msgpack.packb({"e": start.SerializeToString()}))
    first = await _next_turn(stream)
    # The app schedules two activities; the checkpoint of that turn is held at the gate.
    store.gate.clear()
    actions = [schedule_task_action(1, "a"), schedule_task_action(2, "a")]
    apps.complete(first.completionToken, response(ID, *actions))
    await asyncio.wait_for(store.waiting.wait(), 10)
    # Both activities finish while the save is in flight, and a status read happens.
    for task_id in (1, 2):
        done = task_completed_event(task_id, '"ok"', 2)
        payload = msgpack.packb({"e": done.SerializeToString(), "gen": 1})
        await actor.invoke("event", payload)
    await actor.invoke("get", b"")
    store.gate.set()
    second = await _next_turn(stream)
    completed = [e.taskCompleted.taskScheduledId for e in second.workflowRequest.newEvents]
    assert sorted(i for i in completed if i) == [1, 2]
    apps.complete(second.completionToken, response(ID))
    await stream.aclose()
    await actor.on_deactivate()


async def test_an_event_no_inbox_takes_is_refused_to_its_sender() -> None:
    actor = await _activated(MemoryStore(), AppConnections())
    wrong = pb.HistoryEvent(eventId=1)
    wrong.executionCompleted.SetInParent()  # only a turn may record this
    with pytest.raises(WorkflowError, match="cannot enter an inbox"):
        await actor.invoke("event", msgpack.packb({"e": wrong.SerializeToString(), "gen": 1}))
    await actor.on_deactivate()
