"""Carry out what a saved turn decided: dispatch activities, arm timers, start children,
send events, notify parents.

Every effect is safe to repeat (the receivers drop duplicates), so each is retried with
backoff until it succeeds or its actor deactivates; whatever is still undone then is
derived again from the stored state by the next activation (`pending_work`). Nothing
may start that activation (a timer whose reminder was never created never fires), so an
actor with effects outstanding is busy (`outstanding`): the idle sweep leaves it be.
A fan-out of N activities is N dispatches, at most MAX_IN_FLIGHT at a time, so that the
first activities reach the app while the rest are still being routed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack

from reminders.api.v1 import reminders_pb2 as rpb
from sidecar.actors.base import ActorCallError, UnknownActorTypeError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.naming import activity_type, workflow_type
from sidecar.engine.outages import store_outage
from sidecar.workflow import (
    Completed,
    DispatchActivity,
    Effect,
    NotifyParent,
    NotifyWorkflow,
    RunTurn,
    ScheduleStart,
    ScheduleTimer,
    SendEvent,
    StartChild,
    TerminateInstance,
    child_not_started,
)

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0
# Effects of one activation carried out at a time (the others wait their turn). With a
# task per effect a fan-out of N went breadth-first: every dispatch took each step before
# any took the next, so the app got its first activity only after all N had been routed
# and activated (115 ms for 1,000 in-process, 616 ms for 5,000), and sat idle meanwhile.
MAX_IN_FLIGHT = 64


def encode_dispatch(d: DispatchActivity, source_app: str, *, fresh: bool = False) -> bytes:
    """A dispatch as the activity actor receives it; `source_app` is the workflow's app,
    where the outcome goes back to (it may differ from the activity's app). `fresh` only
    on the first attempt of a fresh dispatch: a retry may reach an activation elsewhere
    after the first one saved an outcome."""
    row = {
        "i": d.instance_id, "x": d.execution_id, "g": d.generation, "t": d.task_id,
        "n": d.name, "in": d.input, "te": d.task_execution_id, "app": d.target_app_id,
        "v": d.version, "src": source_app, "f": fresh,
    }  # fmt: skip
    return bytes(msgpack.packb(row))


def decode_dispatch(raw: bytes) -> tuple[DispatchActivity, str]:
    d = msgpack.unpackb(raw)
    dispatch = DispatchActivity(
        instance_id=d["i"], execution_id=d["x"], generation=d["g"], task_id=d["t"],
        name=d["n"], input=d["in"], task_execution_id=d["te"], target_app_id=d["app"],
        version=d["v"], fresh=bool(d.get("f")),
    )  # fmt: skip
    return dispatch, str(d["src"])


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class _Attempt:
    effect: Effect
    first: bool = True
    delay_s: float = 0.05  # the backoff before the next attempt, if this one fails

    def retry(self) -> _Attempt:
        """The attempt after this one failed: its backoff doubled, up to RETRY_MAX_S."""
        return _Attempt(self.effect, False, min(self.delay_s * 2, RETRY_MAX_S))


class EffectRunner:
    """Owned by one actor activation; its tasks end with the activation.

    Effects wait in a queue for one of at most MAX_IN_FLIGHT workers; a failed attempt
    goes back to the queue after its backoff, so a worker never sleeps on one effect
    while others wait."""

    def __init__(self, services: Any, owner: Any) -> None:
        self._s = services
        self._owner = owner
        self._queue: collections.deque[_Attempt] = collections.deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._backoffs: set[asyncio.TimerHandle] = set()
        self._closed = False

    def outstanding(self) -> bool:
        """Whether effects wait, run or wait for a retry: the actor is not idle then."""
        return bool(self._queue or self._workers or self._backoffs)

    def start(self, effects: Iterable[Effect]) -> None:
        if self._closed:
            return  # the activation is gone: the next one derives its effects again
        for effect in effects:
            if isinstance(effect, RunTurn):
                self._owner.kick()
                continue
            if isinstance(effect, Completed):
                continue  # waiting callers were answered when the state was saved
            self._queue.append(_Attempt(effect))
        self._staff()

    def _staff(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        for _ in range(min(MAX_IN_FLIGHT - len(self._workers), len(self._queue))):
            self._workers.add(loop.create_task(self._work()))

    async def _work(self) -> None:
        try:
            while self._queue:
                attempt = self._queue.popleft()
                if not await self._attempt(attempt.effect, attempt.first):
                    self._later(attempt.delay_s, attempt.retry())
        finally:
            # Leaves the count in the same step as it finds the queue empty: an effect
            # queued after that sees one worker fewer and staffs a new one.
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    def _later(self, delay_s: float, attempt: _Attempt) -> None:
        def requeue() -> None:
            self._backoffs.discard(handle)
            self._queue.append(attempt)
            self._staff()

        handle = asyncio.get_running_loop().call_later(delay_s, requeue)  # retry backoff
        self._backoffs.add(handle)

    async def close(self) -> None:
        self._closed = True
        # The owner holds this runner: without the link back, both go by reference
        # counting when the activation ends, not at the cyclic collector's next pass
        # (about 40 objects per activity of a fan-out).
        self._owner = None
        self._queue.clear()
        for handle in self._backoffs:
            handle.cancel()
        self._backoffs.clear()
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()  # one cancelled before it ever ran did not remove itself

    def _wf(self, app_id: str) -> str:
        return workflow_type(self._s.namespace, app_id or self._s.app_id)

    async def run(self, effect: Effect) -> None:
        """Carry out one effect in the caller's task (not through the queue), retried
        with backoff; returns once it succeeded or was refused."""
        attempt = _Attempt(effect)
        while not await self._attempt(attempt.effect, attempt.first):
            await asyncio.sleep(attempt.delay_s)  # retry backoff
            attempt = attempt.retry()

    async def _attempt(self, effect: Effect, first: bool) -> bool:
        """One try; True when it is over (carried out, or refused: not retried)."""
        try:
            await self._run(effect, first)
        except UnknownActorTypeError as exc:
            if isinstance(effect, DispatchActivity | StartChild) and effect.target_app_id:
                # Its app has no sidecar now (down, or not deployed yet): the sidecars'
                # resume after every placement table change issues it again.
                log.warning("effect %s waits for app %r: no sidecar hosts it (%s); it is "
                            "issued again when the placement table changes",
                            type(effect).__name__, effect.target_app_id, exc)  # fmt: skip
            else:
                log.warning("effect %s refused, not retried: %s", type(effect).__name__, exc)
        except ActorCallError as exc:
            if store_outage(exc):  # the target's store, out of reach: no answer yet
                log.info("effect %s met a store outage (%s); retrying", type(effect).__name__, exc)
                return False
            log.warning("effect %s refused, not retried: %s", type(effect).__name__, exc)
            if isinstance(effect, StartChild):
                # The child's actor said no: its parent is told, or it would wait forever.
                notify = child_not_started(effect, str(exc), time.time_ns() // 1_000_000)
                if notify is not None:
                    self.start([notify])
        except Exception as exc:
            log.info("effect %s failed (%s); retrying", type(effect).__name__, exc)
            return False
        return True

    async def _run(self, effect: Effect, first: bool = True) -> None:
        router = self._s.router
        match effect:
            case DispatchActivity():
                act = activity_type(self._s.namespace, effect.target_app_id or self._s.app_id)
                payload = encode_dispatch(effect, self._s.app_id, fresh=effect.fresh and first)
                await router.call(act, effect.actor_id, "dispatch", payload)
            case ScheduleTimer():
                data = {"t": effect.timer_id, "g": effect.generation, "at": effect.fire_at_ms}
                name = f"timer-{effect.generation}-{effect.timer_id}"
                await self._remind(effect.instance_id, name, effect.fire_at_ms, data)
            case ScheduleStart():
                # Named with its time: a purged id started again with another time is
                # another reminder (a late one of the old start only finds nothing due).
                data = {"start": effect.start_at_ms, "g": effect.generation}
                name = f"start-{effect.generation}-{effect.start_at_ms}"
                await self._remind(effect.instance_id, name, effect.start_at_ms, data)
            case StartChild():
                event = self._addressed(effect.event)
                payload = msgpack.packb({"e": event.SerializeToString(), "child": True})
                await router.call(
                    self._wf(effect.target_app_id), effect.instance_id, "start", payload
                )
            case SendEvent() | TerminateInstance():
                payload = msgpack.packb({"e": effect.event.SerializeToString(), "durable": True})
                try:
                    await router.call(
                        self._wf(effect.target_app_id), effect.instance_id, "event", payload
                    )
                except ActorCallError as exc:
                    if store_outage(exc):
                        raise
                    # unknown or finished: dropped
            case NotifyParent():
                parent = effect.parent
                payload = msgpack.packb(
                    {"e": effect.event.SerializeToString(), "exec": parent.execution_id}
                )
                await router.call(self._wf(parent.app_id), parent.instance_id, "event", payload)
            case NotifyWorkflow():
                payload = msgpack.packb(
                    {"e": effect.event.SerializeToString(), "gen": effect.generation}
                )
                await router.call(
                    self._wf(self._owner.source_app), effect.instance_id, "event", payload
                )
            case _:
                raise TypeError(f"unknown effect {effect!r}")

    def _addressed(self, start: pb.HistoryEvent) -> pb.HistoryEvent:
        """A child's ExecutionStarted with its parent's app id filled in: the child,
        maybe in another app, sends its outcome there (an empty one would mean the
        child's own app)."""
        started = start.executionStarted
        if not started.HasField("parentInstance") or started.parentInstance.appID:
            return start
        event = pb.HistoryEvent()
        event.CopyFrom(start)
        event.executionStarted.parentInstance.appID = self._s.app_id
        return event

    async def _remind(self, instance_id: str, name: str, at_ms: int, data: Any) -> None:
        """A one-shot reminder to this app's workflow actor `instance_id` at `at_ms`."""
        reminders = self._s.reminders
        if reminders is None:
            raise RuntimeError("durable timers need the reminders service")
        key = rpb.ReminderKey(
            namespace=self._s.namespace,
            app_id=self._s.app_id,
            actor_type=self._wf(""),
            actor_id=instance_id,
            name=name,
        )
        await reminders.create(key, due_time=rfc3339(at_ms), data=msgpack.packb(data))
