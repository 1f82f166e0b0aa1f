"""The activity actor: one per scheduled task (`dapr.internal.{ns}.{app}.activity`, id
`{instance}::{task id}::{generation}`).

`dispatch` returns as soon as the work is accepted (a re-dispatch first reads the saved
state; a fresh one, from the turn that scheduled the task, skips the read: only a turn
planned again after a crash that lost its checkpoint can find an outcome saved, and then
the activity runs again, which at-least-once allows); the
activity then runs on a connected app (a work item) in a task of the actor's own, its
outcome is sent to the workflow's inbox (retried until it lands) while it is saved under
`activityState`, and then the activation leaves (`ActorContext.leave`). A repeated dispatch
(the workflow recovering) re-sends a saved outcome instead of running the activity
again; without a saved outcome the activity runs again (at least once).

Deactivated while its activity runs (placement moved the actor, or the sidecar stops),
the activation first gives the app up to DRAIN_S to answer and the outcome to be saved:
the workflow's recovery then re-sends that outcome from the store instead of running the
activity a second time on the actor's next host. Placement waits for this host's
acknowledgement of a new table meanwhile (at most its ack timeout, 3 s by default), so
the wait stays well under that; a longer activity is cut off and runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import FIRST_COMPLETED

from sidecar.actors.base import ActorCallError, ActorContext
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import WorkItemTooLargeError
from sidecar.engine.effects import EffectRunner, decode_dispatch
from sidecar.engine.naming import workflow_type
from sidecar.store import StoreError
from sidecar.workflow import (
    ACTIVITY_STATE_KEY,
    METADATA_KEY,
    ActivityState,
    ActivityStatus,
    accept_dispatch,
    complete,
    decode_activity,
    encode_activity,
    fit_activity_response,
    payload_limit,
    store_key,
)
from sidecar.workflow.activity import response_problem
from sidecar.workflow.limits import undeliverable_activity

log = logging.getLogger(__name__)

DRAIN_S = 1.5


class ActivityActor:
    def __init__(self, ctx: ActorContext) -> None:
        s = ctx.services
        self.id = ctx.actor_id
        self.store = s.store
        self.apps = s.apps
        self.key = store_key(s.app_id, ctx.actor_type, ctx.actor_id, ACTIVITY_STATE_KEY)
        self.effects = EffectRunner(s, self)
        self._payload_limit = payload_limit(s.store.limits)
        self.state: ActivityState | None = None
        self._loaded = False  # whether the saved state was read (or known to be absent)
        self.source_app = s.app_id
        self._runner: asyncio.Task[None] | None = None
        self._saved = asyncio.Event()  # this run's outcome is saved (or its save failed)
        self._sweep = s.activity_sweep
        self._namespace = s.namespace
        self._leave = ctx.leave

    def kick(self) -> None:  # EffectRunner's RunTurn hook; activities have no turns
        return None

    def busy(self) -> bool:
        """While the activity runs (minutes, maybe): an idle sweep then would cancel it,
        and nothing would ever send its outcome to the workflow."""
        running = self._runner is not None and not self._runner.done()
        return running or self.effects.outstanding()  # a saved outcome being re-sent

    async def on_activate(self) -> None:
        return None  # the saved state is read by the first dispatch that needs it

    async def _load(self) -> None:
        found = await self.store.get_many([self.key])
        if self.key in found:
            self.state = decode_activity(found[self.key].value)

    async def on_deactivate(self) -> None:
        runner = self._runner
        if runner is not None:
            if not runner.done():
                await self._drain(runner)
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self.effects.close()

    async def _drain(self, runner: asyncio.Task[None]) -> None:
        """Wait up to DRAIN_S for the running activity's outcome to be saved (or the
        run to end): then its next activation re-sends it instead of running it again."""
        saved = asyncio.ensure_future(self._saved.wait())
        try:
            await asyncio.wait({runner, saved}, timeout=DRAIN_S, return_when=FIRST_COMPLETED)
        finally:
            saved.cancel()

    async def invoke(self, method: str, payload: bytes) -> bytes:
        if method != "dispatch":
            raise ActorCallError(f"INVALID_ARGUMENT: unknown activity actor method {method!r}")
        dispatch, source_app = decode_dispatch(payload)
        if not self._loaded:
            # A fresh dispatch comes from the turn that scheduled the task: nothing can
            # be saved for it, and one store read per activity of a fan-out is saved.
            if not dispatch.fresh:
                await self._load()
            self._loaded = True
        self.source_app = source_app
        state = accept_dispatch(self.state, dispatch)
        if state is not self.state and self._runner is not None:
            self._runner.cancel()  # a run for an older scheduling: its outcome is moot
            self._runner = None
        self.state = state
        if self.state.status is ActivityStatus.DONE:
            self.effects.start([self.state.notification()])
        elif self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        return b""

    def _swept_later(self, version: int) -> None:
        """Hand the saved row to the sidecar's sweep: the instance may have been purged
        before the row landed (`sidecar.engine.activity_sweep`)."""
        if self._sweep is None or self.state is None:
            return
        wf_type = workflow_type(self._namespace, self.source_app)
        instance = self.state.request.instance_id
        meta = store_key(self.source_app, wf_type, instance, METADATA_KEY)
        self._sweep.saved(meta, self.key, version, self.state.request.generation)

    async def _answer(self, request: pb.ActivityRequest) -> pb.ActivityResponse:
        """The app's answer, made to fit the store; a failure when the request cannot
        reach the app (over the message limit): no retry would get it there."""
        try:
            response = await self.apps.run_activity(request)
        except WorkItemTooLargeError as exc:
            log.error("activity %s cannot be sent to the app: %s", self.id, exc)
            return undeliverable_activity(request, str(exc))
        assert self.state is not None
        problem = response_problem(self.state.request, response)
        if problem is not None:  # `complete` records a failure of the task instead
            log.warning("activity %s: the app's answer is refused: %s", self.id, problem)
        return fit_activity_response(response, self._payload_limit)

    async def _run(self) -> None:
        assert self.state is not None
        request = self.state.request.request()
        try:
            response = await self._answer(request)
            done, notify = complete(self.state, response, time.time_ns() // 1_000_000)
            self.state = done
            # The outcome is saved while it travels to the workflow, not before: the
            # workflow's next checkpoint records it anyway, and the saved copy only
            # spares a re-run when the workflow recovers from a crash before that
            # checkpoint. A crash before both still runs the activity again (at least
            # once). This takes one store write off every activity's path, so the write
            # is a background one: it may wait a few ms to share a commit with others.
            saving = asyncio.ensure_future(
                self.store.transact({self.key: encode_activity(done)}, background=True)
            )
            saving.add_done_callback(lambda _saving: self._saved.set())
            try:
                if notify is not None:
                    await self.effects.run(notify)  # retried until delivered or refused
            finally:
                try:
                    version = await saving
                except StoreError as exc:  # the workflow's checkpoint records it anyway
                    log.warning("activity %s: its outcome was not saved: %s", self.id, exc)
                else:
                    self._swept_later(version)
            # One-shot: nothing is left to do here. Deactivating now, not after the idle
            # timeout, keeps a fan-out's activations from piling up (a repeated dispatch
            # reads the saved outcome in a new activation).
            self._leave()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("activity %s failed in the sidecar", self.id)
