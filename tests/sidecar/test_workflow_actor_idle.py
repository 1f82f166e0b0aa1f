"""A finished instance's actor asks the host for a short idle time (FINISHED_IDLE_S)
instead of holding its whole history in memory for the sidecar's idle timeout; a
running one leaves that to the host. A later activation answers status reads of a
finished instance from its metadata row, refuses a client's event, drops a late timer
or outcome and purges it without reading its history (unless a recursive purge has
children to find there, or a client's raise, suspend or resume may be a copy of one the
history holds)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

import msgpack
import pytest

from sidecar.actors.base import REMINDER_METHOD, ActorCallError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import instance_of, workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.engine.workflow_runner import FINISHED_IDLE_S
from sidecar.store.base import Versioned
from sidecar.store.memory import MemoryStore
from sidecar.workflow.events import (
    client_raised_event,
    execution_started_event,
    raised_event,
    resumed_event,
    stamped,
    suspended_event,
    task_completed_event,
    terminated_event,
)
from sidecar.workflow.testing import complete_action, response

ID = "wf-idle"


class ReadLog(MemoryStore):
    """Records the keys of every read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        self.reads.append([key.rsplit("||", 1)[1] for key in keys])
        return await super().get_many(keys)


class NullRouter:
    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        return b""


class Recorder:
    """Records every call; a purge deletes one instance."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.calls.append((actor_id, method))
        return b"1" if method == "purge" else b""


@dataclass
class _Started:
    """Instance ID started in an activation of its own; its first turn is at the app."""

    actor: WorkflowActor
    apps: AppConnections
    stream: AsyncGenerator[pb.WorkItem, None]
    turn: pb.WorkItem

    async def complete(self, *actions: pb.WorkflowAction) -> None:
        """The app answers the turn with `actions`, then COMPLETED with output "ok";
        until that is saved."""
        done = complete_action(9, pb.ORCHESTRATION_STATUS_COMPLETED, '"ok"')
        self.apps.complete(self.turn.completionToken, response(ID, *actions, done))
        terminal = self.actor.waits.until(lambda s: s is not None and s.is_terminal,
                                          self.actor.state, 10)  # fmt: skip
        assert await asyncio.wait_for(terminal, 11)

    async def close(self) -> None:
        await self.stream.aclose()
        await self.actor.on_deactivate()


async def _started(store: MemoryStore, router: NullRouter | Recorder | None = None) -> _Started:
    apps = AppConnections()
    actor = workflow_actor(store, apps, router or NullRouter(), ID)
    stream = apps.stream()
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", bytes(msgpack.packb({"e": start.SerializeToString()})))
    turn = await asyncio.wait_for(anext(stream), 10)
    return _Started(actor, apps, stream, turn)


async def _finished(store: MemoryStore) -> None:
    """Runs instance ID to COMPLETED (output "ok") in an activation of its own."""
    started = await _started(store)
    await started.complete()
    await started.close()


async def test_status_reads_of_a_finished_instance_do_not_read_its_history() -> None:
    store = ReadLog()
    await _finished(store)
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    got = await instance_of(later)
    assert got.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert got.workflowState.output.value == '"ok"' and got.workflowState.name == "flow"
    wait = msgpack.packb({"test": "completed", "io": False, "s": 1})
    answer = msgpack.unpackb(await later.invoke("wait", wait))
    assert answer["passed"]
    waited = pb.GetInstanceResponse.FromString(answer["r"])
    assert waited.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    assert not waited.workflowState.HasField("output")  # io=False
    assert store.reads == [["metadata", "customStatus"]]  # once, for both reads
    assert later.idle_timeout_s() == FINISHED_IDLE_S
    # Anything else loads the whole state: the history is there.
    history = await later.invoke("history", b"")
    assert any(r[0].startswith("history-") for r in store.reads[1:])
    assert history
    await later.on_deactivate()


async def test_a_status_read_of_a_running_instance_loads_it_with_one_metadata_read() -> None:
    store = ReadLog()
    await (await _started(store)).close()  # its first turn left unanswered
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    raw = await later.invoke("get", msgpack.packb(False))
    assert isinstance(raw, bytes)
    got = pb.GetInstanceResponse.FromString(raw)
    assert got.workflowState.workflowStatus == pb.ORCHESTRATION_STATUS_PENDING  # no turn yet
    assert store.reads[0] == ["metadata", "customStatus"]
    assert all("metadata" not in keys for keys in store.reads[1:])
    assert later.idle_timeout_s() is None
    await later.on_deactivate()


async def test_a_finished_instance_asks_for_a_short_idle_time() -> None:
    fresh = workflow_actor(MemoryStore(), AppConnections(), NullRouter(), ID)
    assert fresh.idle_timeout_s() is None  # nothing there yet: the host's own
    started = await _started(MemoryStore())
    assert started.actor.idle_timeout_s() is None  # running
    await started.complete()
    assert started.actor.idle_timeout_s() == FINISHED_IDLE_S
    await started.close()


def _durable(event: pb.HistoryEvent) -> bytes:
    """A client's request as the API sends it to the instance's actor."""
    return bytes(msgpack.packb({"e": event.SerializeToString(), "durable": True}))


def _client_event() -> bytes:
    return _durable(raised_event("approval", None, 1))


async def test_a_finished_instance_refuses_events_and_is_purged_without_its_history() -> None:
    store = ReadLog()
    await _finished(store)
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _client_event())
    # A timer it did not wait for fires after it ended, an activity it did not wait for
    # answers: nothing to do.
    timer = msgpack.packb({"data": msgpack.packb({"t": 1, "at": 2, "g": 1})})
    assert await later.invoke(REMINDER_METHOD, timer) == b""
    late = task_completed_event(7, '"late"', 3).SerializeToString()
    assert await later.invoke("event", msgpack.packb({"e": late, "gen": 1})) == b""
    assert await later.invoke("purge", msgpack.packb({"r": True})) == b"1"  # no children
    assert store.reads[0] == ["metadata", "customStatus"]  # once, for every call
    assert not any(key.startswith("history-") for keys in store.reads for key in keys)
    assert await store.scan_prefix("") == []  # every row of the instance is gone
    assert not (await instance_of(later)).exists
    assert await later.invoke("purge", b"") == b"0"
    await later.on_deactivate()


def _terminate(output: str | None = None) -> bytes:
    return _durable(terminated_event(output, 2))


async def test_a_terminate_of_a_terminated_instance_is_answered_ok() -> None:
    """The same terminate sent again (a router does when the owner died before
    answering) or another one: what it asks for holds, and nothing changes. Other
    events are still refused, loaded or from the summary rows alone."""
    store = ReadLog()
    started = await _started(store)
    assert await started.actor.invoke("event", _terminate('"stop"')) == b""
    started.apps.complete(started.turn.completionToken, response(ID))  # the next turn ends it
    terminal = started.actor.waits.until(lambda s: s is not None and s.is_terminal,
                                         started.actor.state, 10)  # fmt: skip
    assert await asyncio.wait_for(terminal, 11)
    assert await started.actor.invoke("event", _terminate('"again"')) == b""  # loaded
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await started.actor.invoke("event", _client_event())
    await started.close()
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    assert await later.invoke("event", _terminate('"again"')) == b""  # the summary rows
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _client_event())
    assert not any(key.startswith("history-") for keys in store.reads for key in keys)
    state = (await instance_of(later)).workflowState
    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_TERMINATED
    assert state.output.value == '"stop"'
    await later.on_deactivate()


def _raise(arrival_ns: int, data: str = '"yes"') -> bytes:
    """A client's raised event as the API stamps it on arrival."""
    return _durable(client_raised_event("approval", data, arrival_ns))


async def test_a_raise_the_finished_instance_took_is_answered_ok_when_sent_again() -> None:
    """A router sends a raise again when the owner died before answering, though it may
    have saved it; if the instance finished meanwhile (maybe because of that event),
    the copy is answered OK, loaded or from a later activation (which reads the history
    to find it). Another raise, or one the instance never read, is refused."""
    store = ReadLog()
    started = await _started(store)
    taken, unread = 1_700_000_000_000_000_123, 1_700_000_000_000_000_456
    assert await started.actor.invoke("event", _raise(taken)) == b""
    started.apps.complete(started.turn.completionToken, response(ID))  # nothing yet
    started.turn = await asyncio.wait_for(anext(started.stream), 10)  # the event's turn
    new = started.turn.workflowRequest.newEvents
    assert [e.eventRaised.name for e in new if e.HasField("eventRaised")] == ["approval"]
    assert await started.actor.invoke("event", _raise(unread)) == b""  # while it runs
    await started.complete()  # this turn ends it: the second event is never read
    assert await started.actor.invoke("event", _raise(taken)) == b""  # loaded
    # Refused: another event, one never taken, one the instance finished without reading
    # (dropped with the inbox: the instance will never take it).
    for refused in (_raise(taken, '"no"'), _raise(taken + 1), _raise(unread), _client_event()):
        with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
            await started.actor.invoke("event", refused)
    await started.close()
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _client_event())  # not a client's raise: no history read
    assert not any(key.startswith("history-") for keys in store.reads for key in keys)
    assert await later.invoke("event", _raise(taken)) == b""
    assert any(key.startswith("history-") for keys in store.reads for key in keys)
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _raise(taken + 1))
    state = (await instance_of(later)).workflowState
    assert state.workflowStatus == pb.ORCHESTRATION_STATUS_COMPLETED
    await later.on_deactivate()


async def test_a_raise_taken_before_a_continue_as_new_is_not_taken_again() -> None:
    """A monitor continues as new on each event. The owner saved a raise and died; the
    next owner ran the event's turn, which continued as new, before the router's copy
    came. The copy must not reach the new generation, nor be refused once it finishes."""
    store = ReadLog()
    started = await _started(store)
    taken = time.time_ns() // 1_000_000 * 1_000_000 + 321  # marks are kept 15 minutes
    assert await started.actor.invoke("event", _raise(taken)) == b""
    started.apps.complete(started.turn.completionToken, response(ID))  # nothing yet
    started.turn = await asyncio.wait_for(anext(started.stream), 10)  # the event's turn
    again = complete_action(1, pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW, '"next"')
    started.apps.complete(started.turn.completionToken, response(ID, again))
    started.turn = await asyncio.wait_for(anext(started.stream), 10)  # generation 2
    assert started.actor.state is not None and started.actor.state.generation == 2
    assert await started.actor.invoke("event", _raise(taken)) == b""  # the copy
    other = taken + 1
    assert await started.actor.invoke("event", _raise(other)) == b""  # another request
    state = started.actor.state
    assert state is not None
    raised = [e.timestamp.nanos for e in state.inbox if e.HasField("eventRaised")]
    assert raised == [other % 1_000_000_000]  # the copy was dropped, the other one kept
    await started.complete()
    assert await started.actor.invoke("event", _raise(taken)) == b""  # finished, loaded
    await started.close()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    assert await later.invoke("event", _raise(taken)) == b""  # from the stored marks
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _raise(taken + 2))
    await later.on_deactivate()


async def test_a_raise_a_finished_execution_took_is_not_taken_by_the_next_one() -> None:
    """The copy of a raise the first execution took comes after the instance id was
    started again: the new execution does not take it."""
    store = ReadLog()
    started = await _started(store)
    taken = time.time_ns() // 1_000_000 * 1_000_000 + 654
    assert await started.actor.invoke("event", _raise(taken)) == b""
    started.apps.complete(started.turn.completionToken, response(ID))  # nothing yet
    started.turn = await asyncio.wait_for(anext(started.stream), 10)  # the event's turn
    await started.complete()
    await started.close()
    apps = AppConnections()
    later = workflow_actor(store, apps, NullRouter(), ID)
    start = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=5, parent=None
    )
    await later.invoke("start", bytes(msgpack.packb({"e": start.SerializeToString()})))
    assert later.state is not None and later.state.generation == 2
    assert await later.invoke("event", _raise(taken)) == b""  # the copy: dropped
    assert await later.invoke("event", _raise(taken + 1)) == b""  # another raise: taken
    state = later.state
    assert state is not None
    raised = [e.timestamp.nanos for e in state.inbox if e.HasField("eventRaised")]
    assert raised == [(taken + 1) % 1_000_000_000]
    await later.on_deactivate()


async def test_a_resume_sent_again_after_its_instance_finished_is_answered_ok() -> None:
    """As a raise: the resume took effect, the instance ran on and finished, and then a
    router sends the resume again. A resume it never had is refused."""
    store = ReadLog()
    started = await _started(store)
    arrival = 1_700_000_000_000_000_789
    suspend = _durable(stamped(suspended_event(None, 0), arrival))
    resume = _durable(stamped(resumed_event(None, 0), arrival + 1))
    assert await started.actor.invoke("event", suspend) == b""
    assert await started.actor.invoke("event", resume) == b""
    started.apps.complete(started.turn.completionToken, response(ID))
    started.turn = await asyncio.wait_for(anext(started.stream), 10)  # suspend and resume
    await started.complete()
    assert await started.actor.invoke("event", resume) == b""  # loaded
    await started.close()
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    assert await later.invoke("event", resume) == b""  # from the history
    assert await later.invoke("event", suspend) == b""
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _durable(stamped(resumed_event(None, 0), arrival + 2)))
    await later.on_deactivate()


async def test_a_terminate_of_an_instance_that_completed_is_refused() -> None:
    store = ReadLog()
    await _finished(store)
    later = workflow_actor(store, AppConnections(), NullRouter(), ID)
    with pytest.raises(ActorCallError, match=r"FAILED_PRECONDITION: .* has finished"):
        await later.invoke("event", _terminate())
    await later.on_deactivate()


async def test_a_recursive_purge_of_a_finished_parent_finds_its_children_in_the_history() -> None:
    store, router = ReadLog(), Recorder()
    started = await _started(store, router)
    child = pb.WorkflowAction(id=1)
    child.createChildWorkflow.instanceId = "kid-1"
    child.createChildWorkflow.name = "kid"
    await started.complete(child)
    await started.close()
    store.reads.clear()
    later = workflow_actor(store, AppConnections(), router, ID)
    assert await later.invoke("purge", msgpack.packb({"r": True})) == b"2"
    assert ("kid-1", "purge") in router.calls
    assert any(keys[0].startswith("history-") for keys in store.reads)
    assert await store.scan_prefix("") == []
    await later.on_deactivate()
