"""What the workflow actor's callers send and are answered, read apart from the actor:
the msgpack payloads of its methods, the tests a `wait` call may wait for, and the
GetInstance answer of a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack

from sidecar.actors.base import REMINDER_METHOD, ActorCallError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.status import instance_response
from sidecar.workflow import WorkflowState
from sidecar.workflow.copies import holds_client_request
from sidecar.workflow.events import is_client_stamped, timestamp_ms
from sidecar.workflow.state import ParentInfo

__all__ = [
    "WAIT_MAX_S",
    "WAIT_TESTS",
    "client_event_when_finished",
    "event_request",
    "has_finished",
    "instance_answer",
    "is_completed",
    "is_recursive",
    "is_same_start",
    "needs_history",
    "now_ms",
    "summary_may_answer",
    "wait_request",
]

# `wait`: the longest a caller may ask to be held before it is answered with the state as
# it is (it then asks again).
WAIT_MAX_S = 60.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def summary_may_answer(method: str, payload: bytes) -> bool:
    """Whether the summary rows of a finished instance may be enough for this call: a
    status read (`get`, `wait`), a client's event (refused), a late outcome or timer
    (an activity that ran on after its workflow was terminated, a timer it did not
    wait for: dropped, as a loaded finished instance drops them), a purge (unless it
    must visit children, which only the history names: see
    `SavedWorkflow._summary_answer`)."""
    if method in ("get", "wait", "purge", REMINDER_METHOD):
        return True
    return method == "event" and event_request(payload) is not None


def event_request(payload: bytes) -> dict[str, Any] | None:
    try:
        d = msgpack.unpackb(payload)
    except Exception:  # refused by the `event` method itself, after a load
        return None
    return d if isinstance(d, dict) else None


def is_recursive(payload: bytes) -> bool:
    return bool(msgpack.unpackb(payload).get("r")) if payload else False


def has_finished(instance_id: str) -> ActorCallError:
    return ActorCallError(f"FAILED_PRECONDITION: instance {instance_id!r} has finished")


def client_event_when_finished(
    instance_id: str, state: WorkflowState, event: pb.HistoryEvent | None
) -> bytes:
    """The answer to a client's event for a finished instance. Answered OK, changing
    nothing, where it may be the same request sent again (a router tries a call once
    more when the owner died before answering, though it may have saved it): a
    terminate of an instance already TERMINATED (what it asks for holds), and a raise,
    suspend or resume the instance holds already (it took effect before the instance
    finished; `state` must then carry the history, see `needs_history`). Anything else
    is refused: the instance completed or failed on its own, or takes no more events."""
    if event is not None:
        terminated = state.status == pb.ORCHESTRATION_STATUS_TERMINATED
        if terminated and event.HasField("executionTerminated"):
            return b""
        if holds_client_request(state, event):
            return b""
    raise has_finished(instance_id)


def needs_history(event: pb.HistoryEvent | None) -> bool:
    """Whether `client_event_when_finished` needs the instance's history to answer
    `event`: a client's stamped request (a raise, a suspend, a resume), which may be in
    it (the summary rows that answer other calls on a finished instance do not carry
    the history)."""
    return event is not None and is_client_stamped(event)


def is_same_start(state: WorkflowState | None, event: pb.HistoryEvent) -> bool:
    """Whether `event` (an ExecutionStarted) is the start that made the stored execution,
    sent again: by a router that tried the call once more after the owner died before
    answering, or by a parent re-issuing a child's start on recovery. That start has
    happened: it must neither fail as a duplicate nor run the instance a second time.
    Told apart by what the API stamped on it on arrival (the time, to the millisecond)
    and what it asks for (name, input, parent)."""
    if state is None or not state.exists:
        return False
    started = event.executionStarted
    meta = state.metadata
    parent = None
    if started.HasField("parentInstance"):
        parent = ParentInfo.from_proto(started.parentInstance)
    return (
        meta.created_ms == timestamp_ms(event.timestamp)
        and meta.name == started.name
        and meta.input == (started.input.value if started.HasField("input") else None)
        and meta.parent == parent
    )


def is_started(state: WorkflowState | None) -> bool:
    return state is not None and state.exists and state.status != pb.ORCHESTRATION_STATUS_PENDING


def is_completed(state: WorkflowState | None) -> bool:
    return state is not None and state.exists and state.is_terminal


WAIT_TESTS: dict[str, Callable[[WorkflowState | None], bool]] = {
    "started": is_started,
    "completed": is_completed,
}


def wait_request(payload: bytes) -> tuple[Callable[[WorkflowState | None], bool], bool, float]:
    """A `wait` call's test, whether it wants inputs and outputs, and how long it may be
    held."""
    try:
        d = msgpack.unpackb(payload)
        test = WAIT_TESTS[d["test"]]
        return test, bool(d.get("io", True)), min(float(d["s"]), WAIT_MAX_S)
    except Exception as exc:
        raise ActorCallError(f"INVALID_ARGUMENT: a bad wait request: {exc!r}") from exc


def instance_answer(payload: bytes, state: WorkflowState | None) -> bytes:
    """A `get` call's answer: GetInstanceResponse bytes, with inputs and outputs unless
    the payload (a msgpack bool) says not."""
    with_io = bool(msgpack.unpackb(payload)) if payload else True
    return instance_response(state, with_io).SerializeToString()
