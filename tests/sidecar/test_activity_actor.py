"""The activity actor: its outcome goes to the workflow while it is being saved (a
background write: nobody waits on it), it is saved all the same, and the activation
leaves once both are done; deactivated mid-activity (moved, or its sidecar stopping), it
gives the app a moment to answer and saves the outcome, which its next activation
re-sends instead of running the activity again; an outcome the store cannot save still
reaches the workflow (one warning line); a result larger than the store holds fails the
activity."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine import activity_actor as activity_module
from sidecar.engine.activity_actor import ActivityActor
from sidecar.engine.apps import AppConnections
from sidecar.engine.effects import encode_dispatch
from sidecar.engine.testing import RecordingRouter, activity_actor
from sidecar.store import StoreUnavailableError
from sidecar.store.base import StateStore
from sidecar.store.gated import GatedStore
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.workflow import ActivityStatus, DispatchActivity, decode_activity

ACTOR_ID = "wf-1::1::1"


def _dispatch(fresh: bool = True) -> bytes:
    d = DispatchActivity(
        instance_id="wf-1", execution_id="e1", generation=1, task_id=1, name="double",
        input="21", task_execution_id="te-1", target_app_id="", version="", fresh=fresh,
    )  # fmt: skip
    return encode_dispatch(d, "app", fresh=fresh)


@dataclass
class _Running:
    """An activity actor whose fresh dispatch reached the app: the item on `stream`."""

    actor: ActivityActor
    apps: AppConnections
    router: RecordingRouter
    left: asyncio.Event  # set when the actor asks to leave
    stream: AsyncGenerator[pb.WorkItem, None]
    item: pb.WorkItem


async def _dispatched(store: StateStore) -> _Running:
    apps, router, left = AppConnections(), RecordingRouter(), asyncio.Event()
    actor = activity_actor(store, apps, router, ACTOR_ID, leave=left.set)
    await actor.on_activate()
    stream = apps.stream()
    assert await actor.invoke("dispatch", _dispatch()) == b""
    item = await asyncio.wait_for(anext(stream), 10)
    return _Running(actor, apps, router, left, stream, item)


async def test_the_outcome_reaches_the_workflow_before_its_save_ends_and_is_saved() -> None:
    store = GatedStore()
    run = await _dispatched(store)
    actor, apps, router, left, stream, item = (
        run.actor,
        run.apps,
        run.router,
        run.left,
        run.stream,
        run.item,
    )
    assert item.activityRequest.name == "double"
    store.gate.clear()  # the outcome's save will wait
    answer = pb.ActivityResponse(instanceId="wf-1", taskId=1, completionToken=item.completionToken)
    answer.result.value = "42"
    apps.complete(item.completionToken, answer)
    # The workflow hears of it while the save is held.
    await asyncio.wait_for(router.called.wait(), 10)
    await asyncio.wait_for(store.waiting.wait(), 10)
    ((_, instance, method, body),) = router.calls
    assert (instance, method) == ("wf-1", "event")
    event = pb.HistoryEvent.FromString(body["e"])
    assert event.taskCompleted.taskScheduledId == 1 and event.taskCompleted.result.value == "42"
    # It leaves only once the save is done, and the save holds the outcome.
    assert not left.is_set()
    store.gate.set()
    await asyncio.wait_for(left.wait(), 10)
    saved = await store.get_many([actor.key])
    state = decode_activity(saved[actor.key].value)
    assert state.status is ActivityStatus.DONE
    await stream.aclose()
    await actor.on_deactivate()


class HeldRouter(RecordingRouter):
    """Records calls and never answers them: placement's round holds every lookup while
    this host has not acknowledged the table that moves the actor."""

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        await super().call(actor_type, actor_id, method, payload)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_moved_mid_activity_its_outcome_is_saved_and_re_sent_not_run_again() -> None:
    store, apps = MemoryStore(), AppConnections()
    actor = activity_actor(store, apps, HeldRouter(), ACTOR_ID)
    stream = apps.stream()
    await actor.invoke("dispatch", _dispatch())
    item = await asyncio.wait_for(anext(stream), 10)
    moving = asyncio.ensure_future(actor.on_deactivate())  # placement moved it
    await asyncio.sleep(0)
    assert not moving.done()  # waiting for the app
    answer = pb.ActivityResponse(instanceId="wf-1", taskId=1, completionToken=item.completionToken)
    answer.result.value = "42"
    assert apps.complete(item.completionToken, answer)
    await asyncio.wait_for(moving, 10)  # once the outcome is saved, long before DRAIN_S
    saved = decode_activity((await store.get_many([actor.key]))[actor.key].value)
    assert saved.status is ActivityStatus.DONE
    # Its next activation, on the next host, gets the recovering workflow's re-dispatch:
    # it sends the saved outcome, and the app is not asked again.
    router = RecordingRouter()
    again = activity_actor(store, apps, router, ACTOR_ID)
    await again.invoke("dispatch", _dispatch(fresh=False))
    await asyncio.wait_for(router.called.wait(), 10)
    ((_, _, method, body),) = router.calls
    assert method == "event"
    assert pb.HistoryEvent.FromString(body["e"]).taskCompleted.result.value == "42"
    assert apps.dispatched_activities == 1
    await again.on_deactivate()
    await stream.aclose()


async def test_moved_mid_activity_it_waits_for_the_app_at_most_drain_s(monkeypatch: Any) -> None:
    monkeypatch.setattr(activity_module, "DRAIN_S", 0.05)
    store, apps = MemoryStore(), AppConnections()
    actor = activity_actor(store, apps, HeldRouter(), ACTOR_ID)
    stream = apps.stream()
    await actor.invoke("dispatch", _dispatch())
    await asyncio.wait_for(anext(stream), 10)
    await asyncio.wait_for(actor.on_deactivate(), 5)  # the app never answers
    assert await store.get_many([actor.key]) == {}  # nothing saved: it runs again
    assert not actor.busy()
    await stream.aclose()


class FlagRecordingStore(MemoryStore):
    """Records each transaction's keys and its `background` flag."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[list[str], bool]] = []

    async def transact(self, writes: Any, *, expect: Any = None, background: bool = False) -> int:
        self.writes.append((list(writes), background))
        return await super().transact(writes, expect=expect or {}, background=background)


async def test_the_outcome_is_saved_as_a_background_write() -> None:
    """The saved outcome only spares a re-run after a crash (the workflow's checkpoint
    records it anyway), so it may wait to share a commit with others."""
    store = FlagRecordingStore()
    event, left = await _run_once(store, "42")
    assert event.taskCompleted.result.value == "42" and left.is_set()
    assert store.writes == [
        ([f"app||dapr.internal.default.app.activity||{ACTOR_ID}||activityState"], True)
    ]


class UnwritableStore(MemoryStore):
    """A store that cannot write (etcd out of reach, say)."""

    async def transact(self, writes: Any, *, expect: Any = None, background: bool = False) -> int:
        raise StoreUnavailableError("etcd txn: no endpoint answered within 10s")


async def _run_once(store: MemoryStore, result: str) -> tuple[pb.HistoryEvent, asyncio.Event]:
    """Dispatch one activity to an actor on `store`, answer it with `result`; the event
    the workflow got, and whether the actor left."""
    apps, router = AppConnections(), RecordingRouter()
    left = asyncio.Event()
    actor = activity_actor(store, apps, router, ACTOR_ID, leave=left.set)
    stream = apps.stream()
    await actor.invoke("dispatch", _dispatch())
    item = await asyncio.wait_for(anext(stream), 10)
    answer = pb.ActivityResponse(instanceId="wf-1", taskId=1, completionToken=item.completionToken)
    answer.result.value = result
    apps.complete(item.completionToken, answer)
    await asyncio.wait_for(left.wait(), 10)
    await stream.aclose()
    await actor.on_deactivate()
    ((_, _, _, body),) = router.calls
    return pb.HistoryEvent.FromString(body["e"]), left


async def test_an_outcome_the_store_cannot_save_still_reaches_the_workflow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.engine.activity_actor")
    event, left = await _run_once(UnwritableStore(), "42")
    assert event.taskCompleted.result.value == "42"
    assert left.is_set()  # and the actor leaves, as after a save
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "not saved" in record.getMessage()
    assert record.exc_info is None  # one line, not a traceback per activity


async def test_a_result_the_store_cannot_hold_fails_the_activity() -> None:
    store = MemoryStore(MemoryConfig(max_txn_bytes=64 * 1024))  # payload limit: 24 KiB
    event, _ = await _run_once(store, '"' + "x" * 30_000 + '"')
    failed = event.taskFailed.failureDetails
    assert failed.errorType == "PayloadTooLarge" and failed.isNonRetriable
    event, _ = await _run_once(MemoryStore(MemoryConfig(max_txn_bytes=64 * 1024)), '"ok"')
    assert event.taskCompleted.result.value == '"ok"'


async def test_an_activity_over_the_message_limit_fails_without_being_sent() -> None:
    """Its request (input) is over what the sidecar may send the app: gRPC would end the
    app's stream and the request would come back for ever. The activity fails instead."""
    store, apps, router = MemoryStore(), AppConnections(max_item_bytes=1024), RecordingRouter()
    left = asyncio.Event()
    actor = activity_actor(store, apps, router, ACTOR_ID, leave=left.set)
    await actor.on_activate()
    stream = apps.stream()
    pump = asyncio.create_task(anext(stream))  # the app's stream, waiting for work
    big = DispatchActivity(
        instance_id="wf-1", execution_id="e1", generation=1, task_id=1, name="double",
        input='"' + "x" * 2000 + '"', task_execution_id="te-1", target_app_id="",
        version="", fresh=True,
    )  # fmt: skip
    assert await actor.invoke("dispatch", encode_dispatch(big, "app", fresh=True)) == b""
    await asyncio.wait_for(router.called.wait(), 10)
    ((_, instance, method, body),) = router.calls
    assert (instance, method) == ("wf-1", "event")
    failed = pb.HistoryEvent.FromString(body["e"]).taskFailed.failureDetails
    assert failed.errorType == "PayloadTooLarge" and failed.isNonRetriable
    assert "cannot be sent to the app" in failed.errorMessage
    assert not pump.done() and apps.dispatched == 0
    pump.cancel()
    await asyncio.wait_for(left.wait(), 10)
    await actor.on_deactivate()


async def test_a_finished_activation_goes_by_reference_counting() -> None:
    """The actor and its effect runner point at each other until the activation ends:
    then the cycle is cut, so a fan-out's thousands of finished activations are freed at
    once instead of piling up for the cyclic collector (about 40 objects each)."""
    run = await _dispatched(MemoryStore())
    answer = pb.ActivityResponse(instanceId="wf-1", taskId=1)
    answer.result.value = "42"
    run.apps.complete(run.item.completionToken, answer)
    await asyncio.wait_for(run.left.wait(), 10)
    await run.stream.aclose()
    actor = run.actor
    del run
    gone = weakref.ref(actor)
    gc.disable()
    try:
        await actor.on_deactivate()
        del actor
        assert gone() is None
    finally:
        gc.enable()
