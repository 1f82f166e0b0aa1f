"""Starting a workflow: a new instance is written on the condition that nothing is
stored, with no read; anything stored (a running duplicate, a finished id started
again) is read and decided as before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import msgpack
import pytest

from sidecar.actors.base import ActorCallError, ActorContext
from sidecar.actors.router import ActorRouter
from sidecar.app import ActorServices
from sidecar.engine.apps import AppConnections
from sidecar.engine.watchers import Watchers
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store import Versioned
from sidecar.store.memory import MemoryStore
from sidecar.workflow.events import execution_started_event, terminated_event

ID = "wf-1"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        self.reads += 1
        return await super().get_many(keys)


class NoRouter:
    async def call(self, *args: object, **kwargs: object) -> bytes:
        return b""


def _actor(store: MemoryStore) -> WorkflowActor:
    services = ActorServices(
        store=store, router=cast(ActorRouter, NoRouter()), app_id="app", namespace="default",
        turn_log=None, apps=AppConnections(), watchers=Watchers(), reminders=None,
    )  # fmt: skip
    return WorkflowActor(ActorContext("dapr.internal.default.app.workflow", ID, "s", services))


def _start(child: bool = False) -> bytes:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    return bytes(msgpack.packb({"e": event.SerializeToString(), "child": child}))


async def test_a_new_instance_is_started_without_a_read() -> None:
    store = CountingStore()
    actor = _actor(store)
    await actor.on_activate()
    await actor.invoke("start", _start())
    assert store.reads == 0
    assert actor.state is not None and actor.state.generation == 1
    await actor.on_deactivate()


async def test_a_running_instance_is_read_and_refused_by_a_later_activation() -> None:
    store = CountingStore()
    first = _actor(store)
    await first.invoke("start", _start())
    await first.on_deactivate()
    second = _actor(store)  # e.g. after the sidecar restarted
    await second.on_activate()
    with pytest.raises(ActorCallError, match="ALREADY_EXISTS"):
        await second.invoke("start", _start())
    assert store.reads >= 1
    assert second.state is not None and second.state.generation == 1
    # A parent's re-sent start of a running child is accepted and changes nothing.
    assert await second.invoke("start", _start(child=True)) == b""
    assert second.state.generation == 1
    await second.on_deactivate()


async def test_a_finished_instance_started_again_gets_the_next_generation() -> None:
    store = CountingStore()
    first = _actor(store)
    await first.invoke("start", _start())
    saved = first.watchers.watch(ID)  # told after every save of the instance
    terminate = terminated_event(None, 2).SerializeToString()
    await first.invoke("event", msgpack.packb({"e": terminate, "durable": True}))
    async with asyncio.timeout(10):  # the actor's runner settles the termination
        while first.state is None or not first.state.is_terminal:
            await saved.wait()
            saved.clear()
    await first.on_deactivate()
    second = _actor(store)
    await second.invoke("start", _start())
    assert second.state is not None and second.state.generation == 2
    await second.on_deactivate()
