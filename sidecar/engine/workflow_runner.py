"""The workflow actor's orchestration runner, a task of the actor's own: while the
inbox holds work it plans a turn, waits for the app's answer (outside the lock, so events
keep arriving and are folded into the next turn), applies it, saves the checkpoint and
then carries out the effects. Activities are dispatched while the checkpoint that
schedules them is saved (`_commit`); completions of a big fan-out gather before the next
turn (`_plan_gather`). `WorkflowActor` (the mailbox) builds on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from sidecar.actors.base import ActorContext
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import WorkItemTooLargeError
from sidecar.engine.workflow_requests import is_completed, now_ms
from sidecar.engine.workflow_saved import SavedWorkflow, retrieve
from sidecar.store import ConflictError, StoreUnavailableError
from sidecar.workflow import (
    AppTurn,
    CheckpointPlan,
    CheckpointTooLargeError,
    Completed,
    DispatchActivity,
    Effect,
    InvalidResponseError,
    StaleTurnError,
    TurnResult,
    WorkflowState,
    apply_response,
    failed_answer,
    plan_turn,
    scheduled_start,
    settle,
    start_at_ms,
    unsaveable,
)
from sidecar.workflow.finish import fail_instance
from sidecar.workflow.limits import PAYLOAD_ERROR_TYPE

__all__ = [
    "COALESCE_MAX_S",
    "COALESCE_MIN_OPEN",
    "FINISHED_IDLE_S",
    "IDLE_HOLD_FACTOR",
    "IDLE_HOLD_MAX_S",
    "WorkflowRunner",
    "cancel_early",
]

log = logging.getLogger(__name__)

# Turns of a big fan-out: every turn makes the SDK replay the whole history (it re-runs
# the workflow function, which re-creates every task), so completions are let gather
# before the next turn while more than COALESCE_MIN_OPEN tasks are open: for about as
# long as the last turn took (at most COALESCE_MAX_S), and after a turn that changed
# nothing (no action: the workflow is blocked, typically on all of its tasks) for
# IDLE_HOLD_FACTOR times as long (at most IDLE_HOLD_MAX_S), so that replays take at most
# about 1 / (1 + IDLE_HOLD_FACTOR) of the time. The wait ends early once every open task
# has its outcome waiting, and at once for anything else (an external event, a timer,
# a termination, a recovery).
COALESCE_MIN_OPEN = 16
COALESCE_MAX_S = 0.25
IDLE_HOLD_FACTOR = 8
IDLE_HOLD_MAX_S = 10.0
# A deactivation waits this long at most for a checkpoint being written to land.
WRITE_DRAIN_S = 10.0
# The runner plans again from the store after a failed save, but not more often in a row.
MAX_CONFLICTS_IN_A_ROW = 2
# A checkpoint the store could not take (out of reach, a full disk) is written again
# after STORE_RETRY_MIN_S, doubling up to STORE_RETRY_MAX_S, for as long as the
# activation lives: nothing else would save the turn until another event came, and
# none may come (a fan-out's last outcome was in it).
STORE_RETRY_MIN_S = 0.1
STORE_RETRY_MAX_S = 5.0
# A turn that failed in a way the engine does not expect (a bug: every failure it knows
# of has its own handling above) is tried again from the stored state after
# TURN_RETRY_MIN_S, doubling up to TURN_RETRY_MAX_S, while the activation lives: the
# instance goes on once the failure does not recur, instead of waiting for an event
# that may never come (tests/engine/test_app_fuzz_e2e.py found one such, now fixed: an
# activity's outcome given for a turn).
TURN_RETRY_MIN_S = 1.0
TURN_RETRY_MAX_S = 60.0

# A finished instance's actor leaves after this long with nothing to do (or after the
# sidecar's idle timeout when that is shorter), instead of holding its whole history in
# memory for the idle timeout: a later activation answers what it can from the
# instance's summary rows alone (`_summary_answer`), and loads the whole state for
# anything else.
FINISHED_IDLE_S = 5.0


@dataclass(frozen=True, slots=True)
class _EarlyTurn:
    turn: AppTurn
    reply: asyncio.Future[pb.WorkflowResponse]


def cancel_early(early: _EarlyTurn | None) -> None:
    if early is not None:
        early.reply.cancel()
        if early.reply.done():  # its answer, or its refusal, is moot
            retrieve(early.reply)


class WorkflowRunner(SavedWorkflow):
    """The runner's task and what it keeps between turns."""

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._runner: asyncio.Task[None] | None = None
        # The first turn of a new instance, sent to the app while its start is saved
        # (`_start`); taken by the runner instead of planning that turn again.
        self._early: _EarlyTurn | None = None
        # Completions gather until this time (time.monotonic()) before the next turn,
        # unless `_hurry` is set: see `_plan_gather`.
        self._gather_until = 0.0
        self._hurry = asyncio.Event()
        self._idle_turn = False  # the last answer from the app had no action
        # Runs the first turn of a start scheduled for later, on time, while this
        # activation lives; the start's reminder is the durable wake-up (`_wake_at`).
        self._wake: asyncio.TimerHandle | None = None
        # The next try after a turn failed unexpectedly (`_retry_later`).
        self._retry: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._retry_s = TURN_RETRY_MIN_S

    async def on_deactivate(self) -> None:
        self.waits.release()  # their callers ask again, wherever the instance lives next
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        early, self._early = self._early, None
        cancel_early(early)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        # A checkpoint being written goes on when its runner is cancelled: let it land
        # before this activation is gone, or it could land after the next owner read
        # the state and make that owner's first save fail.
        writing = self._writing
        if writing is not None and not writing.done():
            await asyncio.wait({writing}, timeout=WRITE_DRAIN_S)
        await self.effects.close()

    # ---- the orchestration runner

    def busy(self) -> bool:
        """While its runner works (a turn at the app, a checkpoint, completions
        gathering): an idle sweep would cut it off mid-turn. And while effects of its
        turns are outstanding (a timer's reminder not created yet, with the reminders
        service out of reach, say): once the activation is gone, nothing would carry
        them out until something else touched the instance."""
        return (self._runner is not None and not self._runner.done()) or self.effects.outstanding()

    def idle_timeout_s(self) -> float | None:
        """How long the host lets it sit idle: FINISHED_IDLE_S once the instance is in a
        terminal state (nothing will happen to it unless a client asks), else the
        host's own idle timeout."""
        finished = is_completed(self.state) or self._finished is not None
        return FINISHED_IDLE_S if finished else None

    def kick(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        conflicts = 0
        try:
            while True:
                await self._gather()
                self._hurry.clear()  # what arrives from now on is in the turn after this
                started = time.monotonic()
                try:
                    if not await self._one_turn():
                        return
                    conflicts, self._retry_s = 0, TURN_RETRY_MIN_S
                except (ConflictError, StaleTurnError):
                    # Reloaded, its pending work re-issued (`_save`): plan from the stored
                    # state (an answer to a turn planned before the reload is stale, and
                    # planned again too). Twice in a row means another activation keeps
                    # writing: stop, and let the next event start the runner again.
                    conflicts += 1
                    if conflicts >= MAX_CONFLICTS_IN_A_ROW:
                        return
                    continue
                self._plan_gather(time.monotonic() - started)
        except Exception:
            log.exception(
                "workflow %s: turn failed; trying again from the stored state in %.0f s",
                self.id, self._retry_s,
            )  # fmt: skip
            self._retry_later()

    def _retry_later(self) -> None:
        """After `_retry_s`: read the stored state again, re-issue what it has pending
        (the failed turn's effects may never have gone out), and run the next turn."""
        delay, self._retry_s = self._retry_s, min(self._retry_s * 2, TURN_RETRY_MAX_S)

        async def again() -> None:
            try:
                async with self._lock:
                    cancel_early(self._early)
                    self._early = None
                    await self._load()
                    self._reissue()
            except Exception as exc:  # the store, say: later again
                log.warning("workflow %s: reload failed (%s); trying again", self.id, exc)
                self._retry_later()
                return
            self._retry = None
            self.kick()

        def start() -> None:
            self._retry = asyncio.get_running_loop().create_task(again())

        self._retry = asyncio.get_running_loop().call_later(delay, start)  # retry backoff

    def _plan_gather(self, last_turn_s: float) -> None:
        """How long completions may gather before the next turn (see COALESCE_MIN_OPEN):
        none while few tasks are open."""
        state = self.state
        if state is None or state.is_terminal or len(state.open.tasks) <= COALESCE_MIN_OPEN:
            self._gather_until = 0.0
        elif self._idle_turn:
            hold = max(min(last_turn_s, COALESCE_MAX_S), IDLE_HOLD_FACTOR * last_turn_s)
            self._gather_until = time.monotonic() + min(hold, IDLE_HOLD_MAX_S)
        else:
            self._gather_until = time.monotonic() + min(last_turn_s, COALESCE_MAX_S)

    def _all_in(self) -> bool:
        """Every open task and child has (about) its outcome waiting: no reason to wait
        for more."""
        state = self.state
        if state is None:
            return True
        waiting = len(state.inbox) + len(self._unfolded)
        return waiting >= len(state.open.tasks) + len(state.open.children)

    def _hurry_up(self) -> None:
        """Something arrived that the next turn must not wait for."""
        self._gather_until = 0.0
        self._hurry.set()

    async def _gather(self) -> None:
        """Wait for `_gather_until` unless nothing waits, all is in, or we are hurried."""
        state = self.state
        if state is None or not (state.inbox or self._unfolded):
            return  # nothing to run a turn for: the runner stops, a later kick restarts it
        delay = self._gather_until - time.monotonic()
        if delay <= 0 or self._hurry.is_set() or self._all_in():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), delay)  # gathering events, bounded

    async def _one_turn(self) -> bool:
        async with self._lock:
            self._fold()
            state = self.state
            early, self._early = self._early, None
            if state is None or state.is_terminal:
                cancel_early(early)
                return False
            settled = settle(state, now_ms())
            if settled is not None:
                cancel_early(early)
                self._idle_turn = False
                await self._commit(settled)
                return True
            reply: Awaitable[pb.WorkflowResponse]
            if early is not None:
                # Planned from the saved start; `apply_response` checks it against the
                # state as it is when the answer comes, like any turn.
                turn, reply = early.turn, early.reply
            else:
                planned = plan_turn(state, now_ms())
                if planned is None:
                    at = start_at_ms(state)
                    if at is not None:
                        self._wake_at(at)  # a scheduled start, not due yet
                    return False
                turn = planned
                reply = self.apps.run_workflow(turn.request, turn.past)  # awaited below
        try:
            response = await reply
        except WorkItemTooLargeError as exc:
            await self._undeliverable(exc)
            return True
        async with self._lock:
            self._fold()
            assert self.state is not None
            try:
                result = apply_response(self.state, turn, response, now_ms(), own_app=self.app_id)
            except StaleTurnError:
                raise
            except InvalidResponseError as exc:
                # An answer no retry would change (an action this engine does not know,
                # from a newer SDK say): the instance fails, instead of waiting for ever.
                log.error("workflow %s: the app's answer cannot be applied: %s", self.id, exc)
                result = failed_answer(self.state, str(exc), now_ms())
            self._idle_turn = not response.actions
            await self._commit(result)
        return True

    async def _undeliverable(self, exc: WorkItemTooLargeError) -> None:
        """The turn cannot reach the app (its history is over the message limit): the
        instance fails, rather than the turn coming back to the same refusal for ever."""
        async with self._lock:
            self._fold()
            assert self.state is not None
            if self.state.is_terminal:
                return
            log.error("workflow %s: its turn cannot be sent to the app: %s", self.id, exc)
            message = f"the workflow's history cannot be sent to the app: {exc}"
            await self._commit(fail_instance(self.state, PAYLOAD_ERROR_TYPE, message, now_ms()))

    def _wake_at(self, at_ms: int) -> None:
        """Kick the runner at `at_ms` (wall clock). The start's reminder (`_arm_start`)
        wakes the instance wherever it lives and after any crash; this one is on time
        in the live activation, even if the reminders service's clock runs a little
        ahead of this machine's (a trigger before the start is due plans nothing)."""
        if self._wake is not None:
            self._wake.cancel()

        def wake() -> None:
            self._wake = None
            self._hurry_up()
            self.kick()

        delay_s = max(0.0, (at_ms - now_ms()) / 1000)
        self._wake = asyncio.get_running_loop().call_later(delay_s, wake)  # a scheduled start

    def _arm_start(self, state: WorkflowState) -> None:
        """The durable wake-up of a start scheduled for later (none for any other)."""
        wake = scheduled_start(state, now_ms())
        if wake is not None:
            self.effects.start([wake])

    async def _commit(self, result: TurnResult) -> None:
        # Activities are dispatched while the checkpoint that schedules them is written,
        # not after: one store write fewer on the path of every step. If that write never
        # lands (a crash, or another activation wrote first), the activity's outcome finds
        # no open task and is dropped, and the turn, planned again from the stored state,
        # schedules the same task (same activity actor) again: activities run at least
        # once, as always. Every other effect waits for the save.
        # The plan comes first: a turn whose state no transaction can hold (a row over
        # the store's limit) fails the instance from its last saved state instead, and
        # nothing of that turn goes out (it would come back, and fail again, forever).
        try:
            plan = self._plan(result.state)
        except CheckpointTooLargeError as exc:
            assert self.state is not None
            log.error("workflow %s: its state cannot be saved, it fails: %s", self.id, exc)
            result = unsaveable(self.state, str(exc), now_ms())
            plan = self._plan(result.state)
        early: list[Effect] = []
        rest: list[Effect] = []
        for effect in result.effects:
            (early if isinstance(effect, DispatchActivity) else rest).append(effect)
        if early:
            self.effects.start(early)
        await self._save_until_taken(result.state, plan)
        for effect in rest:
            if isinstance(effect, Completed):
                self.metrics.finished_with(effect.status)
        self.effects.start(rest)

    async def _save_until_taken(self, state: WorkflowState, plan: CheckpointPlan) -> None:
        """Save a turn's checkpoint, again and again while the store fails (see
        STORE_RETRY_MIN_S). The lock stays held: nothing else may save meanwhile, so the
        plan stays valid, and the app's answer is kept instead of asked for again. A
        write whose outcome was lost, tried again, meets its own landed self: a
        conflict, which reloads the stored state (`_save`) and ends the turn."""
        delay_s = STORE_RETRY_MIN_S
        while True:
            try:
                await self._save(state, plan=plan)
                return
            except StoreUnavailableError as exc:
                self.metrics.checkpoint_failures += 1
                log.warning("workflow %s: the state store did not take the checkpoint, "
                            "again in %.3gs: %s", self.id, delay_s, exc)  # fmt: skip
                await asyncio.sleep(delay_s)  # retry backoff
                delay_s = min(delay_s * 2, STORE_RETRY_MAX_S)

    def _send_early(self, state: WorkflowState) -> _EarlyTurn | None:
        turn = plan_turn(state, now_ms())
        if turn is None:
            return None
        reply = asyncio.ensure_future(self.apps.run_workflow(turn.request, turn.past))
        return _EarlyTurn(turn, reply)
