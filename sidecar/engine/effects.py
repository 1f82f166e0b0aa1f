"""Carry out what a saved turn decided: dispatch activities, arm timers, start children,
send events, notify parents.

Every effect is safe to repeat (the receivers drop duplicates), so each runs in its own
task and is retried with backoff until it succeeds or its actor deactivates; whatever
is still undone then is derived again from the stored state by the next activation
(`pending_work`). A fan-out of N activities is N concurrent dispatches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgpack

from reminders.api.v1 import reminders_pb2 as rpb
from sidecar.actors.base import ActorCallError, UnknownActorTypeError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.naming import activity_type, workflow_type
from sidecar.workflow import (
    Completed,
    DispatchActivity,
    Effect,
    NotifyParent,
    NotifyWorkflow,
    RunTurn,
    ScheduleTimer,
    SendEvent,
    StartChild,
    TerminateInstance,
)

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0


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


class EffectRunner:
    """Owned by one actor activation; its tasks end with the activation."""

    def __init__(self, services: Any, owner: Any) -> None:
        self._s = services
        self._owner = owner
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, RunTurn):
                self._owner.kick()
                continue
            if isinstance(effect, Completed):
                continue  # watchers were told when the state was saved
            task = asyncio.get_running_loop().create_task(self.run(effect))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _wf(self, app_id: str) -> str:
        return workflow_type(self._s.namespace, app_id or self._s.app_id)

    async def run(self, effect: Effect) -> None:
        """Carry out one effect (in the caller's task; `start` gives each its own),
        retried with backoff; returns once it succeeded or was refused."""
        delay = 0.05
        first = True
        while True:
            try:
                await self._run(effect, first)
                return
            except (UnknownActorTypeError, ActorCallError) as exc:
                log.warning("effect %s refused, not retried: %s", type(effect).__name__, exc)
                return
            except Exception as exc:
                log.info("effect %s failed (%s); retrying", type(effect).__name__, exc)
            first = False
            await asyncio.sleep(delay)  # retry backoff
            delay = min(delay * 2, RETRY_MAX_S)

    async def _run(self, effect: Effect, first: bool = True) -> None:
        router = self._s.router
        match effect:
            case DispatchActivity():
                act = activity_type(self._s.namespace, effect.target_app_id or self._s.app_id)
                payload = encode_dispatch(effect, self._s.app_id, fresh=effect.fresh and first)
                await router.call(act, effect.actor_id, "dispatch", payload)
            case ScheduleTimer():
                await self._arm_timer(effect)
            case StartChild():
                event = self._addressed(effect.event)
                payload = msgpack.packb({"e": event.SerializeToString(), "child": True})
                await router.call(
                    self._wf(effect.target_app_id), effect.instance_id, "start", payload
                )
            case SendEvent() | TerminateInstance():
                payload = msgpack.packb({"e": effect.event.SerializeToString(), "durable": True})
                with contextlib.suppress(ActorCallError):  # unknown or finished: dropped
                    await router.call(
                        self._wf(effect.target_app_id), effect.instance_id, "event", payload
                    )
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

    async def _arm_timer(self, timer: ScheduleTimer) -> None:
        reminders = self._s.reminders
        if reminders is None:
            raise RuntimeError("durable timers need the reminders service")
        key = rpb.ReminderKey(
            namespace=self._s.namespace,
            app_id=self._s.app_id,
            actor_type=self._wf(""),
            actor_id=timer.instance_id,
            name=f"timer-{timer.generation}-{timer.timer_id}",
        )
        data = msgpack.packb({"t": timer.timer_id, "g": timer.generation, "at": timer.fire_at_ms})
        await reminders.create(key, due_time=rfc3339(timer.fire_at_ms), data=data)
