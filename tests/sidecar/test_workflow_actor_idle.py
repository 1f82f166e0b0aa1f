"""A finished instance's actor asks the host for a short idle time (FINISHED_IDLE_S)
instead of holding its whole history in memory for the sidecar's idle timeout; a
running one leaves that to the host."""

from __future__ import annotations

import asyncio

import msgpack

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import workflow_actor
from sidecar.engine.workflow_actor import FINISHED_IDLE_S
from sidecar.store.memory import MemoryStore
from sidecar.workflow.events import execution_started_event
from sidecar.workflow.testing import complete_action, response

ID = "wf-idle"


class NullRouter:
    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        return b""


async def test_a_finished_instance_asks_for_a_short_idle_time() -> None:
    apps = AppConnections()
    actor = workflow_actor(MemoryStore(), apps, NullRouter(), ID)
    await actor.on_activate()
    assert actor.idle_timeout_s() is None  # nothing there yet: the host's own
    stream = apps.stream()
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", bytes(msgpack.packb({"e": start.SerializeToString()})))
    turn = await asyncio.wait_for(anext(stream), 10)
    assert actor.idle_timeout_s() is None  # running
    done = complete_action(1, pb.ORCHESTRATION_STATUS_COMPLETED, '"ok"')
    apps.complete(turn.completionToken, response(ID, done))
    assert await asyncio.wait_for(
        actor.waits.until(lambda s: s is not None and s.is_terminal, actor.state, 10), 11
    )
    assert actor.idle_timeout_s() == FINISHED_IDLE_S
    await stream.aclose()
    await actor.on_deactivate()
