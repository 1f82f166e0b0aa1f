"""Test support for the engine's actors: one workflow or activity actor, alone, on a
given store, app connections and router (any object with the router's `call`), as the
actor host would build it. The tests of the shell drive these directly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import msgpack

from sidecar.actors.base import ActorContext
from sidecar.actors.router import ActorRouter
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.app import ActorServices
from sidecar.engine.activity_actor import ActivityActor
from sidecar.engine.activity_sweep import ActivitySweep
from sidecar.engine.apps import AppConnections
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store.base import StateStore

__all__ = ["WORKFLOW_TYPE", "RecordingRouter", "activity_actor", "instance_of", "workflow_actor"]

WORKFLOW_TYPE = "dapr.internal.default.app.workflow"
ACTIVITY_TYPE = "dapr.internal.default.app.activity"


class RecordingRouter:
    """A router that takes every actor call, records it as (actor type, actor id,
    method, the msgpack payload unpacked), sets `called` and answers b""."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []
        self.called = asyncio.Event()

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.calls.append((actor_type, actor_id, method, msgpack.unpackb(payload)))
        self.called.set()
        return b""


def _services(
    store: StateStore, apps: AppConnections, router: Any, sweep: ActivitySweep | None = None
) -> ActorServices:
    return ActorServices(
        store=store, router=cast(ActorRouter, router), app_id="app", namespace="default",
        turn_log=None, apps=apps, reminders=None, activity_sweep=sweep,
    )  # fmt: skip


def workflow_actor(
    store: StateStore, apps: AppConnections, router: Any, instance_id: str
) -> WorkflowActor:
    """The workflow actor of `instance_id`, app `app`, namespace `default`."""
    ctx = ActorContext(WORKFLOW_TYPE, instance_id, "s", _services(store, apps, router))
    return WorkflowActor(ctx)


async def instance_of(actor: WorkflowActor) -> pb.GetInstanceResponse:
    """What GetInstance (with inputs and outputs) answers for the actor's instance."""
    raw = await actor.invoke("get", msgpack.packb(True))
    assert isinstance(raw, bytes)
    return pb.GetInstanceResponse.FromString(raw)


def activity_actor(
    store: StateStore,
    apps: AppConnections,
    router: Any,
    actor_id: str,
    leave: Callable[[], None] | None = None,
    *,
    sweep: ActivitySweep | None = None,
) -> ActivityActor:
    """The activity actor `actor_id`; `leave` is what its `ActorContext.leave` calls,
    `sweep` the sidecar's activity sweep it hands its saved row to."""
    services = _services(store, apps, router, sweep)
    if leave is None:
        return ActivityActor(ActorContext(ACTIVITY_TYPE, actor_id, "s", services))
    return ActivityActor(ActorContext(ACTIVITY_TYPE, actor_id, "s", services, leave=leave))
