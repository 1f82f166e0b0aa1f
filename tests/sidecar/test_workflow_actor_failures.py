"""Turns the engine cannot complete end the instance FAILED at once, with nothing of
the turn sent out: an answer it cannot apply (an action it does not know), a state no
store transaction can hold. Before, the runner stopped with the instance RUNNING; with
a turn that scheduled an activity it even looped (the activity went out before the save
failed, and its outcome ran the turn again, for ever)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine import workflow_runner
from sidecar.engine.apps import AppConnections
from sidecar.engine.testing import workflow_actor
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.workflow import (
    INVALID_RESPONSE_ERROR_TYPE,
    PAYLOAD_ERROR_TYPE,
    WorkflowState,
    apply_response,
)
from sidecar.workflow.effects import TurnResult
from sidecar.workflow.events import execution_started_event
from sidecar.workflow.testing import complete_action, response, schedule_task_action

ID = "wf-1"


class RecordingRouter:
    def __init__(self) -> None:
        self.methods: list[str] = []

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        self.methods.append(method)
        return b""


def _actor(store: MemoryStore, apps: AppConnections, router: RecordingRouter) -> WorkflowActor:
    return workflow_actor(store, apps, router, ID)


async def _answered(
    store: MemoryStore, answer: pb.WorkflowResponse
) -> tuple[WorkflowActor, RecordingRouter]:
    """A started instance whose first turn the app answered with `answer`, once the
    instance has finished."""
    apps, router = AppConnections(), RecordingRouter()
    actor = _actor(store, apps, router)
    await actor.on_activate()
    stream = apps.stream()
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", msgpack.packb({"e": event.SerializeToString()}))
    turn = await asyncio.wait_for(anext(stream), 10)
    apps.complete(turn.completionToken, answer)

    def finished(state: WorkflowState | None) -> bool:
        return state is not None and state.is_terminal

    assert await asyncio.wait_for(actor.waits.until(finished, actor.state, 10), 11)
    assert apps.queued_workflows == 0  # no other turn
    await stream.aclose()
    return actor, router


def _failure(actor: WorkflowActor) -> pb.TaskFailureDetails:
    assert actor.state is not None
    assert actor.state.metadata.terminal_status == pb.ORCHESTRATION_STATUS_FAILED
    details = actor.state.metadata.failure_details()
    assert details is not None and details.isNonRetriable
    return details


async def test_an_answer_with_an_unknown_action_fails_the_instance() -> None:
    unknown = pb.WorkflowAction(id=2)  # e.g. a newer SDK's action: no field we know
    answer = response(ID, schedule_task_action(1, "a"), unknown)
    actor, router = await _answered(MemoryStore(), answer)
    details = _failure(actor)
    assert details.errorType == INVALID_RESPONSE_ERROR_TYPE
    assert "unsupported workflow action" in details.errorMessage
    assert router.methods == []  # the answer's activity never went out
    await actor.on_deactivate()


async def test_a_turn_no_transaction_can_hold_fails_the_instance_and_sends_nothing() -> None:
    store = MemoryStore(MemoryConfig(max_txn_bytes=64 * 1024))
    big = schedule_task_action(1, "a", '"' + "x" * 70_000 + '"')
    done = complete_action(2, pb.ORCHESTRATION_STATUS_COMPLETED, '"done"')
    actor, router = await _answered(store, response(ID, big, done))
    details = _failure(actor)
    assert details.errorType == PAYLOAD_ERROR_TYPE
    assert "cannot be saved" in details.errorMessage
    assert router.methods == []
    await actor.on_deactivate()
    # What is stored is the failed instance: a new activation reads it so.
    again = _actor(store, AppConnections(), router)
    got = await again.invoke("get", msgpack.packb(False))
    assert isinstance(got, bytes)
    stored = pb.GetInstanceResponse.FromString(got).workflowState
    assert stored.workflowStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert stored.failureDetails.errorType == PAYLOAD_ERROR_TYPE
    await again.invoke("history", b"")  # loads the whole state
    assert again.state is not None and again.state.is_terminal
    assert _failure(again).errorType == PAYLOAD_ERROR_TYPE
    await again.on_deactivate()


async def test_a_turn_that_fails_unexpectedly_is_tried_again_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure the engine does not expect (a bug) does not leave the instance waiting
    for an event that may never come: the runner reads the stored state again and sends
    the turn anew."""
    monkeypatch.setattr(workflow_runner, "TURN_RETRY_MIN_S", 0.05)
    calls: list[str] = []

    def fails_once(*args: Any, **kwargs: Any) -> TurnResult:
        calls.append(args[2].completionToken)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return apply_response(*args, **kwargs)

    monkeypatch.setattr(workflow_runner, "apply_response", fails_once)
    apps, router = AppConnections(), RecordingRouter()
    actor = _actor(MemoryStore(), apps, router)
    await actor.on_activate()
    stream = apps.stream()
    event = execution_started_event(
        name="flow", instance_id=ID, execution_id="", input=None, now_ms=1, parent=None
    )
    await actor.invoke("start", msgpack.packb({"e": event.SerializeToString()}))
    done = response(ID, complete_action(1, pb.ORCHESTRATION_STATUS_COMPLETED, '"ok"'))
    for _ in range(2):  # the turn, then the same turn again
        turn = await asyncio.wait_for(anext(stream), 10)
        assert turn.workflowRequest.newEvents[1].HasField("executionStarted")
        done.completionToken = turn.completionToken
        apps.complete(turn.completionToken, done)

    def finished(state: WorkflowState | None) -> bool:
        return state is not None and state.is_terminal

    assert await asyncio.wait_for(actor.waits.until(finished, actor.state, 10), 11)
    assert actor.state is not None and actor.state.metadata.output == '"ok"'
    assert len(calls) == 2 and calls[0] != calls[1]
    await stream.aclose()
    await actor.on_deactivate()
