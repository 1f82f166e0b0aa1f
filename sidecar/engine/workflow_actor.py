"""The workflow actor: one per instance (`dapr.internal.{ns}.{app}.workflow`, id = the
instance id). It loads, calls the pure core (`sidecar.workflow`), saves and sends.

Two kinds of work share the actor's state:
- its mailbox turns (`invoke`): starts, events from clients, activities, timers and
  children, reads. They are short: an event is added to the inbox (saved at once when it
  comes from a client, who expects it durable; otherwise kept in memory and saved with
  the next turn's checkpoint, since its sender re-sends it on recovery);
- the orchestration runner, a task of the actor's own: while the inbox holds work it
  plans a turn, waits for the app's answer (outside the lock, so events keep arriving and
  are folded into the next turn), applies it, saves the checkpoint (one guarded store
  transaction, chunked only past the store's limits) and then carries out the effects.
  Two things overlap a save instead of waiting for it: a new instance's first turn runs
  while its start is saved, and activities are dispatched while the checkpoint that
  schedules them is saved (both are dropped or repeated safely if the save fails).
Every state change happens under one lock, so the runner and the mailbox never lose each
other's changes. A failed save (another activation wrote first) reloads from the store
and re-issues what the stored state has pending. A deactivation lets a checkpoint being
written land before the activation is gone. A turn no retry would complete (an answer
with an action this engine does not know, a state no store transaction can hold) fails
the instance at once, with nothing of that turn sent out.

The class is built in three layers, one module each: `workflow_saved.SavedWorkflow` (the
state as loaded, folded and saved), `workflow_runner.WorkflowRunner` (the orchestration
runner) and `WorkflowActor` here (the mailbox: the methods other parties call);
`workflow_requests` reads their payloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgpack

from sidecar.actors.base import REMINDER_METHOD, ActorCallError, Answer
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.naming import instance_id_problem
from sidecar.engine.purge import purge_children
from sidecar.engine.status import instance_response
from sidecar.engine.workflow_requests import (
    client_event_when_finished,
    instance_answer,
    is_recursive,
    is_same_start,
    now_ms,
    summary_may_answer,
    wait_request,
)
from sidecar.engine.workflow_runner import WorkflowRunner, cancel_early
from sidecar.store import ConflictError
from sidecar.workflow import (
    Metadata,
    RerunError,
    WorkflowState,
    add_events,
    child_instances,
    inbox_kind,
    pending_work,
    rerun_from,
)
from sidecar.workflow.copies import marks_to_keep
from sidecar.workflow.events import timer_fired_event
from sidecar.workflow.finish import continued_execution_id
from sidecar.workflow.state import new_state

__all__ = ["WorkflowActor"]


class WorkflowActor(WorkflowRunner):
    """One workflow instance's actor: the methods its callers invoke, on the state and
    runner of the layers below."""

    async def on_activate(self) -> None:
        # The stored state is read by the first message that needs it: a start of a new
        # instance needs none, it writes on the condition that nothing is stored (see
        # `_start`), which saves a store read on the path of every new workflow.
        return None

    # ---- the mailbox

    async def invoke(self, method: str, payload: bytes) -> Answer:
        handler = self._methods().get(method)
        if handler is None:
            raise ActorCallError(f"INVALID_ARGUMENT: unknown workflow actor method {method!r}")
        if not self._loaded and summary_may_answer(method, payload):
            answer = await self._summary_answer(method, payload)
            if answer is not None:
                return answer
        elif method != "start":
            await self._ensure_loaded()
        return await handler(payload)

    def _methods(self) -> dict[str, Callable[[bytes], Awaitable[Answer]]]:
        return {
            "start": self._start,
            "event": self._event,
            REMINDER_METHOD: self._timer,
            "get": self._get,
            "wait": self._wait,
            "history": self._history,
            "purge": self._purge,
            "recover": self._recover,
            "rerun": self._rerun,
        }

    async def _start(self, payload: bytes) -> bytes:
        d: dict[str, Any] = msgpack.unpackb(payload)
        event = pb.HistoryEvent.FromString(d["e"])
        if not event.router.sourceAppID:
            # The SDK takes its app id from this router and stamps it on every action:
            # children and remote activities answer to it.
            event.router.sourceAppID = self.app_id
        self._check_size(event, "start event")
        self._check_id()
        async with self._lock:
            self._fold()
            if not self._loaded:
                # Most starts are of new instances: write generation 1 on the condition
                # that nothing is stored. Only when something is (a rerun of a finished
                # id, a duplicate, a parent's re-sent start) read it and decide below.
                # The first turn goes to the app meanwhile: it only reads the start event,
                # and its answer is applied after the save, or dropped if the save fails.
                state = self._started(event, 1)
                early = self._send_early(state)
                try:
                    await self._save(state, reload_on_conflict=False)
                except BaseException as exc:
                    cancel_early(early)
                    if not isinstance(exc, ConflictError):
                        raise
                    await self._ensure_loaded()
                else:
                    self._loaded = True
                    self._early = early
                    self.metrics.started += 1
                    self._arm_start(state)
                    self.kick()
                    return b""
            if self._answered_as_stored(d, event):
                return b""
            generation = self.state.generation + 1 if self.state is not None else 1
            state = self._started(event, generation, before=self.state)
            await self._save(state)
            self.metrics.started += 1
            self._arm_start(state)
        self._hurry_up()
        self.kick()
        return b""

    def _answered_as_stored(self, d: dict[str, Any], event: pb.HistoryEvent) -> bool:
        """A start decided against the stored instance: True when it is answered as the
        instance stands (the same start sent again; a parent's re-sent start of a running
        child), False when a new execution begins (nothing stored, or a finished
        instance's id reused), ALREADY_EXISTS otherwise (running, or any stored instance
        when the caller asked for a new one)."""
        state = self.state
        if state is None or not state.exists:
            return False
        if is_same_start(state, event):
            # Sent again after it took effect: answered as the first was. A finished
            # child sends its outcome to its parent again (the parent asks because it
            # has not got it).
            if state.is_terminal:
                self.effects.start(pending_work(state))
            return True
        if d.get("new"):
            raise ActorCallError(
                f"ALREADY_EXISTS: an instance with id {self.id!r} exists; purge it to "
                "use the id again"
            )
        if state.is_terminal:
            return False
        if d.get("child"):
            return True  # a parent's re-sent start: already running
        raise ActorCallError(f"ALREADY_EXISTS: an instance with id {self.id!r} is running")

    def _check_id(self) -> None:
        """Refuse to create an instance under an id no API could name: the client APIs
        check it on arrival, a child's id (chosen by the workflow's code) is checked here,
        and its parent's task then fails (`child_not_started`)."""
        problem = instance_id_problem(self.id)
        if problem is not None:
            raise ActorCallError(f"INVALID_ARGUMENT: {problem}")

    def _check_size(self, event: pb.HistoryEvent, what: str) -> None:
        """Refuse an event no checkpoint of this store could hold (see
        `sidecar.workflow.limits`): nothing is stored, the caller is told."""
        size = event.ByteSize()
        if size > self._payload_limit:
            raise ActorCallError(
                f"RESOURCE_EXHAUSTED: the {what} is {size} bytes; this sidecar's state store "
                f"holds at most {self._payload_limit} bytes per input or event"
            )

    def _started(
        self, event: pb.HistoryEvent, generation: int, before: WorkflowState | None = None
    ) -> WorkflowState:
        """A new execution (`generation`) of this instance, holding its start `event`;
        with the marks of the client requests `before` (the finished execution, loaded
        whole) took, so that a late copy of one is not taken by the new execution."""
        started = event.executionStarted
        started.workflowInstance.executionId.value = continued_execution_id(self.id, generation)
        state = new_state(self.id, generation)
        if before is not None:
            state = replace(state, earlier_requests=marks_to_keep(before, now_ms()))
        return add_events(state, [event])

    async def _event(self, payload: bytes) -> bytes:
        d: dict[str, Any] = msgpack.unpackb(payload)
        event = pb.HistoryEvent.FromString(d["e"])
        if not d.get("durable"):
            # Kept in memory until the next checkpoint: its sender re-sends it on recovery.
            # Checked now, so that a fold never meets an event it must refuse.
            inbox_kind(event)
            if self.state is not None and self.state.exists:
                self._unfolded.append((event, d.get("gen"), d.get("exec")))
                if self._gather_until and self._all_in():
                    self._hurry.set()
                self.kick()
            return b""
        async with self._lock:
            self._fold()
            if self.state is None or not self.state.exists:
                raise ActorCallError(f"NOT_FOUND: no such instance exists: {self.id!r}")
            if self.state.is_terminal:
                return client_event_when_finished(self.id, self.state, event)
            self._check_size(event, f"{inbox_kind(event)} event")
            new = add_events(self.state, [event])
            if new is not self.state:
                await self._save(new)
        self._hurry_up()
        self.kick()
        return b""

    async def _timer(self, payload: bytes) -> bytes:
        trigger: dict[str, Any] = msgpack.unpackb(payload)
        data: dict[str, Any] = msgpack.unpackb(trigger["data"])
        if "start" in data:
            # A scheduled start is due: run the first turn (if the start still waits;
            # a start of another generation, or one already run, plans nothing).
            self._hurry_up()
            self.kick()
            return b""
        event = timer_fired_event(int(data["t"]), int(data["at"]), now_ms())
        async with self._lock:
            self._fold()
            if self.state is not None:
                self.state = add_events(self.state, [event], generation=int(data["g"]))
        self._hurry_up()
        self.kick()
        return b""

    async def _rerun(self, payload: bytes) -> bytes:
        """Become the rerun of a finished instance (RerunWorkflowFromEvent): the payload
        carries the source's history and what GetInstance said of it."""
        d: dict[str, Any] = msgpack.unpackb(payload)
        history = pb.GetInstanceHistoryResponse.FromString(d["h"]).events
        source = WorkflowState(
            instance_id=d["src"],
            history=tuple(history),
            metadata=Metadata(name=d["name"], input=d["in"], terminal_status=d["status"]),
        )
        self._check_id()
        async with self._lock:
            self._fold()
            if self.state is not None and self.state.exists:
                raise ActorCallError(f"ALREADY_EXISTS: an instance with id {self.id!r} exists")
            try:
                state = rerun_from(source, d["event"], self.id, d["new_in"], now_ms())
            except RerunError as exc:
                raise ActorCallError(f"NOT_FOUND: {exc}") from exc
            if self.state is not None:  # a purged id: stay above its old generation
                state = replace(state, generation=self.state.generation + 1)
            await self._save(state)
            self.metrics.started += 1
            self.effects.start(pending_work(state))
        return b""

    async def _recover(self, payload: bytes) -> bytes:
        """Placement moved actors (a sidecar joined, left or died): re-issue everything
        still pending, since the actors that were running it may be gone. Receivers drop
        what they already have; activities still running ignore the repeat.

        Under the lock, so after a checkpoint being written: the work that checkpoint
        schedules went out early (see `_commit`), maybe to the sidecar that just left,
        and only the saved state has it."""
        async with self._lock:
            self._fold()
            if self.state is not None and not self.state.is_terminal:
                self.effects.start(pending_work(self.state))
        self._hurry_up()
        self.kick()
        return b""

    async def _get(self, payload: bytes) -> bytes:
        return instance_answer(payload, self.state)

    async def _wait(self, payload: bytes) -> Answer:
        """Answer once the instance passes a test of WAIT_TESTS (`test`: "started" or
        "completed"), or after `s` seconds (at most WAIT_MAX_S) or when this activation
        leaves, whichever comes first: {"passed": bool, "r": GetInstanceResponse bytes,
        with inputs and outputs when `io`}. The turn ends at once; the answer is a future
        settled by the save that makes the instance pass, so a waiting caller costs the
        actor nothing in between."""
        test, with_io, bound = wait_request(payload)

        def answer(passed: bool) -> bytes:
            r = instance_response(self.state, with_io).SerializeToString()
            return bytes(msgpack.packb({"passed": passed, "r": r}))

        if test(self.state):
            return answer(True)
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waited = self.waits.until(test, self.state, bound)

        def settle(done: asyncio.Future[bool]) -> None:
            if not reply.done():
                reply.set_result(answer(not done.cancelled() and done.result()))

        waited.add_done_callback(settle)
        reply.add_done_callback(lambda _: waited.cancel())  # the caller went away
        return reply

    async def _history(self, payload: bytes) -> bytes:
        """The committed history: what the app replays as past events. Events still in
        the inbox are not history yet (an app holding history between turns fetches
        this on a cache miss and must get exactly its past events)."""
        if self.state is None or not self.state.exists:
            raise ActorCallError(f"NOT_FOUND: no such instance exists: {self.id!r}")
        return pb.GetInstanceHistoryResponse(events=self.state.history).SerializeToString()

    async def _purge(self, payload: bytes) -> bytes:
        """Delete a finished instance (and its activities' rows); with `r`, its children
        first, recursively. Answers how many instances were deleted."""
        recursive = is_recursive(payload)
        async with self._lock:
            self._fold()
            state = self.state
            if state is None:
                await self._delete_rows()  # what a purge cut short left, if anything
                return b"0"
            if not state.exists:
                return b"0"
            if not state.is_terminal:
                raise ActorCallError(
                    f"FAILED_PRECONDITION: instance {self.id!r} is not in a terminal state"
                )
            children = child_instances(state) if recursive else []
            deleted = await purge_children(self.router, self.namespace, self.app_id, children)
            await self._forget()
        self.waits.changed(None)
        return str(deleted + 1).encode()
