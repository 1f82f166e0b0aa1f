"""A checkpoint the state store cannot take (etcd out of reach, a full disk): the
workflow actor writes it again, with a backoff, until the store takes it, and keeps
the app's answer (the app is not asked for the turn again). Before,
the runner stopped at the first failure and the instance stayed RUNNING with nothing
to wake it (found with a full tmpfs under `actorflow up`: workflows started just before
the disk filled never finished once it was freed)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgpack

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import instance_of, workflow_actor
from sidecar.store import NO_EXPECT, StoreUnavailableError, TransactionOutcomeUnknownError
from sidecar.store.memory import MemoryStore
from sidecar.workflow import WorkflowState
from sidecar.workflow.events import execution_started_event
from sidecar.workflow.testing import complete_action, response

ID = "wf-outage"


class OutageStore(MemoryStore):
    """A memory store whose transactions fail while `down` is set; with `unknown`, they
    are applied and then reported as of unknown outcome (a reply lost on the way)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.unknown = False
        self.failures = 0
        self.failed_twice = asyncio.Event()  # a save failed, and so did its retry

    def _fail(self) -> None:
        self.failures += 1
        if self.failures >= 2:
            self.failed_twice.set()

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        if self.unknown:
            self.unknown = False
            await super().transact(writes, expect=expect, background=background)
            raise TransactionOutcomeUnknownError("the reply was lost")
        if self.down:
            self._fail()
            raise StoreUnavailableError("database or disk is full")
        return await super().transact(writes, expect=expect, background=background)


class NullRouter:
    async def call(self, *args: object, **kwargs: object) -> bytes:
        return b""


def _finished(state: WorkflowState | None) -> bool:
    return state is not None and state.is_terminal


async def _outage(store: OutageStore, *, lose_reply: bool) -> None:
    apps = AppConnections()
    actor = workflow_actor(store, apps, NullRouter(), ID)
    await actor.on_activate()
    stream = apps.stream()
    answers = 0

    async def app() -> None:  # answers every turn it is given: the workflow completes
        nonlocal answers
        async for item in stream:
            answers += 1
            done = complete_action(1, pb.ORCHESTRATION_STATUS_COMPLETED, '"done"')
            apps.complete(item.completionToken, response(ID, done))

    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    serving = asyncio.ensure_future(app())
    try:
        await actor.invoke("start", msgpack.packb({"e": event.SerializeToString()}))
        # The start is saved (its own write); the first turn's checkpoint comes after
        # the app's answer, which needs the loop: set up its failure before then.
        if lose_reply:
            store.unknown = True  # it lands, but the store says it does not know
        else:
            store.down = True
            await asyncio.wait_for(store.failed_twice.wait(), 10)
            store.down = False
        assert await asyncio.wait_for(actor.waits.until(_finished, actor.state, 20), 21)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await stream.aclose()
        await actor.on_deactivate()
    assert answers == 1  # the answer was kept through the failed saves
    again = workflow_actor(store, AppConnections(), NullRouter(), ID)
    stored = (await instance_of(again)).workflowState
    assert stored.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert stored.output.value == '"done"'
    await again.on_deactivate()


async def test_a_turn_the_store_refused_runs_again_once_it_is_back() -> None:
    await _outage(OutageStore(), lose_reply=False)


async def test_a_turn_whose_save_was_not_reported_is_read_back_and_finishes() -> None:
    await _outage(OutageStore(), lose_reply=True)
