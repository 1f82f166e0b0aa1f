"""Starting a workflow: a new instance is written on the condition that nothing is
stored, with no read; anything stored (a running duplicate, a finished id started
again, refused when the caller asked for a new instance) is read and decided as
before. And callers waiting for an instance to start or finish: held by its actor,
answered by the save that passes their test. A start or event larger than the store
can hold is refused before anything is written. A purge deletes the instance's own
rows, in batches, and one cut short leaves nothing half deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import msgpack
import pytest

from sidecar.actors.base import ActorCallError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.naming import activity_prefix, instance_prefix
from sidecar.engine.purge import PURGE_BATCH
from sidecar.engine.testing import RecordingRouter, instance_of, workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store import Versioned
from sidecar.store.base import NO_EXPECT
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.workflow import ParentInfo
from sidecar.workflow.events import execution_started_event, raised_event, terminated_event

ID = "wf-1"


class CountingStore(MemoryStore):
    def __init__(self, config: MemoryConfig | None = None) -> None:
        super().__init__(config)
        self.reads = 0

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        self.reads += 1
        return await super().get_many(keys)


class NoRouter:
    async def call(self, *args: object, **kwargs: object) -> bytes:
        return b""


def _actor(store: MemoryStore) -> WorkflowActor:
    return workflow_actor(store, AppConnections(), NoRouter(), ID)


def _start(child: bool = False, new: bool = False, at_ms: int = 1) -> bytes:
    """A start as an API stamps it on arrival (`at_ms`): another request is another time."""
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=at_ms, parent=None
    )
    return bytes(msgpack.packb({"e": event.SerializeToString(), "child": child, "new": new}))


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
        await second.invoke("start", _start(at_ms=2))
    assert store.reads >= 1
    assert second.state is not None and second.state.generation == 1
    # A parent's re-sent start of a running child is accepted and changes nothing.
    assert await second.invoke("start", _start(child=True, at_ms=3)) == b""
    assert second.state.generation == 1
    await second.on_deactivate()


async def test_a_finished_instance_started_again_gets_the_next_generation() -> None:
    store = CountingStore()
    first = _actor(store)
    await first.invoke("start", _start())
    terminate = terminated_event(None, 2).SerializeToString()
    await first.invoke("event", msgpack.packb({"e": terminate, "durable": True}))
    # The actor's runner settles the termination; a waiting caller is told.
    finished = await first.invoke("wait", msgpack.packb({"test": "completed", "s": 10}))
    assert isinstance(finished, asyncio.Future)  # not finished when asked: answered later
    answer = msgpack.unpackb(await asyncio.wait_for(finished, 11))
    assert answer["passed"] and first.state is not None and first.state.is_terminal
    # A start that asks for a new instance (the HTTP seed form) is refused while the
    # finished one is stored, by the actor that ran it and by a fresh activation.
    with pytest.raises(ActorCallError, match=r"ALREADY_EXISTS: .* exists; purge it"):
        await first.invoke("start", _start(new=True, at_ms=2))
    await first.on_deactivate()
    second = _actor(store)
    with pytest.raises(ActorCallError, match="ALREADY_EXISTS"):
        await second.invoke("start", _start(new=True, at_ms=2))
    assert second.state is not None and second.state.generation == 1
    await second.invoke("start", _start(at_ms=3))
    assert second.state is not None and second.state.generation == 2
    await second.on_deactivate()


async def _terminate(actor: WorkflowActor) -> None:
    """Terminate the running instance and wait until its actor has settled it."""
    terminate = terminated_event(None, 2).SerializeToString()
    await actor.invoke("event", msgpack.packb({"e": terminate, "durable": True}))
    finished = await actor.invoke("wait", msgpack.packb({"test": "completed", "s": 10}))
    if isinstance(finished, asyncio.Future):
        finished = await asyncio.wait_for(finished, 11)
    assert msgpack.unpackb(finished)["passed"]


async def test_the_same_start_sent_again_is_answered_as_the_first_was() -> None:
    """A router tries a call again when the owner died before answering, though the
    start may have been saved: running or already finished, it is not refused as a
    duplicate, nor run a second time."""
    store = CountingStore()
    first = _actor(store)
    await first.invoke("start", _start(new=True))
    await first.on_deactivate()  # the owner dies before its answer leaves
    second = _actor(store)
    assert await second.invoke("start", _start(new=True)) == b""
    assert second.state is not None and second.state.generation == 1
    await _terminate(second)
    assert await second.invoke("start", _start()) == b""
    assert await second.invoke("start", _start(new=True)) == b""
    assert second.state.generation == 1 and second.state.is_terminal
    await second.on_deactivate()


async def test_a_finished_childs_start_sent_again_tells_its_parent_again() -> None:
    """A parent that recovers re-sends the start of every child it has no outcome of;
    a child that finished meanwhile sends its outcome again instead of running again."""
    parent = ParentInfo(instance_id="parent", execution_id="p-exec", task_scheduled_id=4)
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input='"x"', now_ms=5,
        parent=parent.to_proto(),
    )  # fmt: skip
    start = msgpack.packb({"e": event.SerializeToString(), "child": True})
    router = RecordingRouter()
    actor = workflow_actor(CountingStore(), AppConnections(), router, ID)
    await actor.invoke("start", start)
    await _terminate(actor)
    notices = 1
    for _ in range(2):  # the first notice when it finished, then one per start re-sent
        async with asyncio.timeout(5):
            while sum(1 for c in router.calls if c[1:3] == ("parent", "event")) < notices:
                router.called.clear()
                await router.called.wait()
        await actor.invoke("start", start)
        notices += 1
    assert actor.state is not None and actor.state.generation == 1
    _, _, _, sent = next(c for c in router.calls if c[1:3] == ("parent", "event"))
    told = pb.HistoryEvent.FromString(sent["e"])
    assert told.HasField("childWorkflowInstanceFailed") and sent["exec"] == "p-exec"
    await actor.on_deactivate()


def _wait(test: str, seconds: float = 10, io: bool = True) -> bytes:
    return bytes(msgpack.packb({"test": test, "s": seconds, "io": io}))


async def test_waiting_callers_are_answered_by_the_save_that_passes_their_test() -> None:
    actor = _actor(CountingStore())
    await actor.on_activate()
    # Asked before the instance exists: both wait, and the turns end at once.
    started = await actor.invoke("wait", _wait("started"))
    finished = await actor.invoke("wait", _wait("completed", io=False))
    assert isinstance(started, asyncio.Future) and isinstance(finished, asyncio.Future)
    assert len(actor.waits) == 2
    await actor.invoke("start", _start())  # saved, pending: no app has run it
    assert not started.done() and not finished.done()
    terminate = terminated_event('"stop"', 2).SerializeToString()
    await actor.invoke("event", msgpack.packb({"e": terminate, "durable": True}))
    for waiting in (started, finished):
        answer = msgpack.unpackb(await asyncio.wait_for(waiting, 11))
        assert answer["passed"]
        state = pb.GetInstanceResponse.FromString(answer["r"]).workflowState
        assert state.workflowStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    assert len(actor.waits) == 0
    # Passed already: answered in the turn itself.
    again = await actor.invoke("wait", _wait("completed"))
    assert isinstance(again, bytes) and msgpack.unpackb(again)["passed"]
    await actor.on_deactivate()


async def test_a_wait_ends_unpassed_at_its_bound_or_when_the_actor_leaves() -> None:
    actor = _actor(CountingStore())
    await actor.on_activate()
    await actor.invoke("start", _start())
    bounded = await actor.invoke("wait", _wait("completed", seconds=0.01))
    held = await actor.invoke("wait", _wait("completed"))
    assert isinstance(bounded, asyncio.Future) and isinstance(held, asyncio.Future)
    assert not msgpack.unpackb(await asyncio.wait_for(bounded, 5))["passed"]
    await actor.on_deactivate()  # placement moved it, say: the caller asks the next owner
    assert not msgpack.unpackb(await asyncio.wait_for(held, 5))["passed"]
    with pytest.raises(ActorCallError, match="INVALID_ARGUMENT"):
        await actor.invoke("wait", _wait("finished"))


def _big_start(input_bytes: int) -> bytes:
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input="x" * input_bytes, now_ms=1,
        parent=None,
    )  # fmt: skip
    return bytes(msgpack.packb({"e": event.SerializeToString()}))


async def test_a_start_or_event_the_store_cannot_hold_is_refused_and_nothing_stored() -> None:
    store = CountingStore(MemoryConfig(max_txn_bytes=64 * 1024))  # payload limit: 24 KiB
    actor = _actor(store)
    await actor.on_activate()
    with pytest.raises(ActorCallError, match=r"RESOURCE_EXHAUSTED: the start event is \d+ bytes"):
        await actor.invoke("start", _big_start(30_000))
    assert await store.scan_prefix("") == []
    await actor.invoke("start", _big_start(20_000))  # within the limit
    stored = await store.scan_prefix("")
    big = raised_event("go", "e" * 30_000, 2)
    payload = msgpack.packb({"e": big.SerializeToString(), "durable": True})
    with pytest.raises(ActorCallError, match="RESOURCE_EXHAUSTED: the eventRaised event"):
        await actor.invoke("event", payload)
    assert await store.scan_prefix("") == stored  # nothing written
    small = raised_event("go", "e" * 100, 3)
    await actor.invoke("event", msgpack.packb({"e": small.SerializeToString(), "durable": True}))
    assert actor.state is not None and len(actor.state.inbox) == 2
    await actor.on_deactivate()


async def test_an_instance_is_not_created_under_an_id_no_api_could_name() -> None:
    """A child's id comes from the workflow's code, past the client APIs' checks; its
    actor refuses it, before anything is stored."""
    store = CountingStore()
    for bad in ("p||x", "tab\there", "x" * 257):
        actor = workflow_actor(store, AppConnections(), NoRouter(), bad)
        with pytest.raises(ActorCallError, match="INVALID_ARGUMENT: instanceId"):
            await actor.invoke("start", _start(child=True))
        await actor.on_deactivate()
    assert await store.scan_prefix("") == []


async def _terminated(actor: WorkflowActor) -> None:
    """Starts instance ID and terminates it, until that is saved."""
    await actor.invoke("start", _start())
    terminate = terminated_event(None, 2).SerializeToString()
    await actor.invoke("event", msgpack.packb({"e": terminate, "durable": True}))
    finished = await actor.invoke("wait", _wait("completed"))
    assert isinstance(finished, asyncio.Future)
    assert msgpack.unpackb(await asyncio.wait_for(finished, 11))["passed"]


async def test_a_purge_deletes_its_own_activities_rows_only() -> None:
    """Instance `wf-1::7` shares the key prefix of `wf-1`'s activity actors
    (`wf-1::{task}::{generation}`): purging `wf-1` deleted its activities' rows too."""
    store = CountingStore()
    actor = _actor(store)
    await _terminated(actor)
    activity = activity_prefix("app", "default", ID)  # the helpers' app and namespace
    own = {f"{activity}3::1||activityState", f"{activity}12::2||activityState"}
    other = {f"{activity}7::3::1||activityState", f"{activity}x::0::1||activityState"}
    await store.transact(dict.fromkeys(own | other, b"outcome"))
    assert await actor.invoke("purge", b"") == b"1"
    left = {key for key, _ in await store.scan_prefix(activity)}
    assert left == other
    await actor.on_deactivate()


class PurgeStore(MemoryStore):
    """Records how many rows each transaction writes or deletes (`sizes`); with
    `crash_at` = n, the nth transaction from then on fails, as if the sidecar died before
    it."""

    def __init__(self, config: MemoryConfig | None = None) -> None:
        super().__init__(config)
        self.sizes: list[int] = []
        self.crash_at: int | None = None

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        if self.crash_at is not None:
            self.crash_at -= 1
            if self.crash_at == 0:
                raise ConnectionError("the sidecar died here")
        self.sizes.append(len(writes))
        return await super().transact(writes, expect=expect, background=background)


def _crashing() -> PurgeStore:
    return PurgeStore(MemoryConfig(max_txn_ops=4))  # 3 deletes per transaction; etcd: 128


@pytest.mark.parametrize("crash_at", [2, 3])
async def test_a_purge_cut_short_leaves_the_instance_whole_or_only_orphans(crash_at: int) -> None:
    """A purge that takes several transactions deletes the activities' rows first (the
    instance stays whole), then its metadata, custom status and index entry together,
    then the rest (history rows no load reads). Cut short at either step, the next purge
    of the id finishes the job."""
    store = _crashing()
    actor = _actor(store)
    await _terminated(actor)
    activity = activity_prefix("app", "default", ID)
    await store.transact({f"{activity}{task}::1||activityState": b"x" for task in range(3)})
    # Rows that sort before the metadata row (orphans a crashed checkpoint would leave),
    # and a custom status.
    own = instance_prefix("app", actor.type, ID)
    await store.transact({f"{own}history-{i:06d}": b"x" for i in range(50, 53)})
    await store.transact({f"{own}customStatus": b"busy"})
    stored = {key for key, _ in await store.scan_prefix("")}
    store.crash_at = crash_at
    with pytest.raises(ConnectionError):
        await actor.invoke("purge", b"")
    await actor.on_deactivate()
    left = {key for key, _ in await store.scan_prefix("")}
    assert left and left < stored
    assert not any(key.startswith(activity) for key in left)
    later = _actor(store)  # the next activation, after the crash
    found = await instance_of(later)
    if crash_at == 2:  # before the metadata's transaction: whole, and purged again
        assert found.exists
        assert await later.invoke("purge", b"") == b"1"
    else:  # after it: gone for every reader, its orphans swept by the next purge
        assert not found.exists
        assert f"{own}customStatus" not in left
        assert await later.invoke("purge", b"") == b"0"
    assert await store.scan_prefix("") == []
    await later.on_deactivate()


async def test_an_activation_whose_purge_failed_midway_reads_the_rows_again() -> None:
    """A finished instance purged from its metadata row alone, by an activation that
    had not loaded it: when the purge fails after the metadata is gone, that activation
    does not go on answering from the row it read before."""
    store = _crashing()
    first = _actor(store)
    await _terminated(first)
    await first.on_deactivate()
    own = instance_prefix("app", first.type, ID)
    await store.transact({f"{own}history-{i:06d}": b"x" for i in range(50, 53)})
    later = _actor(store)
    assert (await instance_of(later)).exists
    store.crash_at = 2  # the metadata's transaction passes, the next one fails
    with pytest.raises(ConnectionError):
        await later.invoke("purge", b"")
    assert not (await instance_of(later)).exists
    assert await later.invoke("purge", b"") == b"0"
    assert await store.scan_prefix("") == []
    await later.on_deactivate()


async def test_a_big_purge_goes_in_batches_that_let_other_writes_through() -> None:
    """The store takes a million operations per transaction, but a purge deletes at most
    PURGE_BATCH rows in each: one transaction holds the store's writer, and every other
    workflow's checkpoint waits behind it."""
    store = PurgeStore()
    actor = _actor(store)
    await _terminated(actor)
    activity = activity_prefix("app", "default", ID)
    rows = 2 * PURGE_BATCH + 10
    await store.transact({f"{activity}{task}::1||activityState": b"x" for task in range(rows)})
    store.sizes.clear()
    assert await actor.invoke("purge", b"") == b"1"
    assert await store.scan_prefix("") == []
    assert sum(store.sizes) > rows and len(store.sizes) >= 3
    assert max(store.sizes) <= PURGE_BATCH
    await actor.on_deactivate()
