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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from sidecar.actors.base import REMINDER_METHOD, ActorCallError, ActorContext, Answer
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import WorkItemTooLargeError
from sidecar.engine.effects import EffectRunner
from sidecar.engine.naming import index_key, instance_id_problem
from sidecar.engine.purge import delete_rows, purge_children
from sidecar.engine.status import instance_response
from sidecar.engine.waits import StateWaits
from sidecar.store import ConflictError, Versioned
from sidecar.workflow import (
    CUSTOM_STATUS_KEY,
    METADATA_KEY,
    AppTurn,
    CheckpointPlan,
    CheckpointTooLargeError,
    Completed,
    DispatchActivity,
    Effect,
    Finished,
    InvalidResponseError,
    Metadata,
    RerunError,
    StaleTurnError,
    StoredLayout,
    TurnResult,
    WorkflowState,
    add_events,
    apply_response,
    child_instances,
    failed_answer,
    inbox_kind,
    keys_to_load,
    layout_of,
    load_finished,
    load_state,
    payload_limit,
    pending_work,
    plan_checkpoint,
    plan_turn,
    rerun_from,
    scheduled_start,
    settle,
    start_at_ms,
    store_key,
    unsaveable,
)
from sidecar.workflow.events import timer_fired_event
from sidecar.workflow.finish import continued_execution_id, fail_instance
from sidecar.workflow.limits import PAYLOAD_ERROR_TYPE
from sidecar.workflow.state import new_state

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
# `wait`: the longest a caller may ask to be held before it is answered with the state as
# it is (it then asks again).
WAIT_MAX_S = 60.0


# A finished instance's actor leaves after this long with nothing to do (or after the
# sidecar's idle timeout when that is shorter), instead of holding its whole history in
# memory for the idle timeout: a later activation answers what it can from the
# instance's summary rows alone (`_summary_answer`), and loads the whole state for
# anything else.
FINISHED_IDLE_S = 5.0


_SUMMARY = (METADATA_KEY, CUSTOM_STATUS_KEY)  # the rows a finished instance's status needs


def _summary_may_answer(method: str, payload: bytes) -> bool:
    """Whether the summary rows of a finished instance may be enough for this call: a
    status read (`get`, `wait`), a client's event (refused), a late outcome or timer
    (an activity that ran on after its workflow was terminated, a timer it did not
    wait for: dropped, as a loaded finished instance drops them), a purge (unless it
    must visit children, which only the history names: see `_summary_answer`)."""
    if method in ("get", "wait", "purge", REMINDER_METHOD):
        return True
    return method == "event" and _event_request(payload) is not None


def _event_request(payload: bytes) -> dict[str, Any] | None:
    try:
        d = msgpack.unpackb(payload)
    except Exception:  # refused by `_event` itself, after a load
        return None
    return d if isinstance(d, dict) else None


def _recursive(payload: bytes) -> bool:
    return bool(msgpack.unpackb(payload).get("r")) if payload else False


def _has_finished(instance_id: str) -> ActorCallError:
    return ActorCallError(f"FAILED_PRECONDITION: instance {instance_id!r} has finished")


def _started(state: WorkflowState | None) -> bool:
    return state is not None and state.exists and state.status != pb.ORCHESTRATION_STATUS_PENDING


def _completed(state: WorkflowState | None) -> bool:
    return state is not None and state.exists and state.is_terminal


WAIT_TESTS: dict[str, Callable[[WorkflowState | None], bool]] = {
    "started": _started,
    "completed": _completed,
}


def _wait_request(payload: bytes) -> tuple[Callable[[WorkflowState | None], bool], bool, float]:
    """A `wait` call's test, whether it wants inputs and outputs, and how long it may be
    held."""
    try:
        d = msgpack.unpackb(payload)
        test = WAIT_TESTS[d["test"]]
        return test, bool(d.get("io", True)), min(float(d["s"]), WAIT_MAX_S)
    except Exception as exc:
        raise ActorCallError(f"INVALID_ARGUMENT: a bad wait request: {exc!r}") from exc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _EarlyTurn:
    turn: AppTurn
    reply: asyncio.Future[pb.WorkflowResponse]


def _retrieve(done: asyncio.Future[Any]) -> None:
    """A write whose saver went away (cancelled) still has its error read here."""
    if not done.cancelled():
        done.exception()


def _cancel(early: _EarlyTurn | None) -> None:
    if early is not None:
        early.reply.cancel()
        if early.reply.done():  # its answer, or its refusal, is moot
            _retrieve(early.reply)


class WorkflowActor:
    def __init__(self, ctx: ActorContext) -> None:
        s = ctx.services
        self.id = ctx.actor_id
        self.type = ctx.actor_type
        self.store = s.store
        self.app_id: str = s.app_id
        self.namespace: str = s.namespace
        self.router = s.router
        self.apps = s.apps
        self.effects = EffectRunner(s, self)
        self.metrics = s.metrics
        self._payload_limit = payload_limit(self.store.limits)
        # Callers waiting for this instance to start or finish (`wait`), from any sidecar.
        self.waits: StateWaits[WorkflowState | None] = StateWaits(s.waiting)
        self.state: WorkflowState | None = None
        # Events that need no save of their own (activity and child outcomes), with
        # their generation / execution filters: folded into the state in one
        # `add_events` call by the next holder of the lock that changes the state
        # (`_fold`), so a fan-out's completions cost one inbox copy per turn, not one each.
        self._unfolded: list[tuple[pb.HistoryEvent, int | None, str | None]] = []
        self.layout = StoredLayout()
        self.version = 0
        self._lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._loaded = False  # the stored state was read (or written by a new start)
        # A finished instance as its summary rows hold it, without its history
        # (`_summary_answer`): kept while only calls that need no more come.
        self._finished: Finished | None = None
        # The first turn of a new instance, sent to the app while its start is saved
        # (`_start`); taken by the runner instead of planning that turn again.
        self._early: _EarlyTurn | None = None
        # Completions gather until this time (time.monotonic()) before the next turn,
        # unless `_hurry` is set: see `_plan_gather`.
        self._gather_until = 0.0
        self._hurry = asyncio.Event()
        self._idle_turn = False  # the last answer from the app had no action
        self._writing: asyncio.Future[int] | None = None  # the checkpoint being written
        # Runs the first turn of a start scheduled for later, on time, while this
        # activation lives; the start's reminder is the durable wake-up (`_wake_at`).
        self._wake: asyncio.TimerHandle | None = None

    def _key(self, short: str) -> str:
        return store_key(self.app_id, self.type, self.id, short)

    def _fold(self) -> None:
        """Add the events received since the last fold to the state. Only under the lock:
        a fold outside it could land in a state that a save in progress then replaces."""
        pending, self._unfolded = self._unfolded, []
        state = self.state
        if not pending or state is None:
            return  # nothing to add, or purged / never started: nothing to add them to
        for (generation, execution), group in itertools.groupby(
            pending, key=lambda p: (p[1], p[2])
        ):
            events = [event for event, _, _ in group]
            state = add_events(state, events, generation=generation, execution_id=execution)
        self.state = state

    # ---- lifecycle

    async def on_activate(self) -> None:
        # The stored state is read by the first message that needs it: a start of a new
        # instance needs none, it writes on the condition that nothing is stored (see
        # `_start`), which saves a store read on the path of every new workflow.
        return None

    async def _ensure_loaded(self, found: dict[str, Versioned] | None = None) -> None:
        """Read the stored state once, and re-issue what it still has pending (the actor
        may be here because its sidecar died or placement moved it)."""
        self._finished = None
        if self._loaded:
            return
        await self._load(found)
        self._loaded = True
        self._reissue()

    async def _read_finished(self) -> Finished | None:
        """The instance as its summary rows hold it, when it is finished; else None, with
        the whole state loaded (reusing the rows read here)."""
        if self._finished is None:
            keys = [self._key(short) for short in _SUMMARY]
            found = await self.store.get_many(keys)
            self._finished = load_finished(
                {short: found[key].value for short, key in zip(_SUMMARY, keys, strict=True)
                 if key in found}
            )  # fmt: skip
            if self._finished is None:
                await self._ensure_loaded(found)
        return self._finished

    async def _summary_answer(self, method: str, payload: bytes) -> bytes | None:
        """A call on a finished instance not loaded yet (see `_summary_may_answer`),
        answered from its metadata and custom status rows instead of loading a history
        that may hold tens of thousands of events (a finished instance's actor leaves
        after FINISHED_IDLE_S; a dashboard may ask again and again, a clean-up job purges
        it). A status read reports what these rows hold, a client's event is refused, a
        late outcome or timer is dropped, a purge deletes the rows. None when that is
        not enough: the instance is not finished, or a recursive purge may have children
        to visit; the whole state is then loaded and the method answers as usual."""
        finished = await self._read_finished()
        if finished is None:
            return None
        if method == REMINDER_METHOD or (
            method == "event" and not (_event_request(payload) or {}).get("durable")
        ):
            return b""  # a finished instance takes no timer and no outcome
        match method:
            case "get":
                return self._instance(payload, finished.state)
            case "wait":
                _test, with_io, _bound = _wait_request(payload)  # a finished one passes both
                r = instance_response(finished.state, with_io).SerializeToString()
                return bytes(msgpack.packb({"passed": True, "r": r}))
            case "event":
                raise _has_finished(self.id)
        if _recursive(payload) and finished.has_children is not False:
            await self._ensure_loaded()
            return None
        async with self._lock:
            await self._forget()
        self.waits.changed(None)
        return b"1"

    def _reissue(self) -> None:
        """Re-issue what the state has pending (its activities, timers, children...):
        after a load, the actors that were carrying it out may be gone."""
        if self.state is not None and not self.state.is_terminal:
            self.effects.start(pending_work(self.state))

    async def on_deactivate(self) -> None:
        self.waits.release()  # their callers ask again, wherever the instance lives next
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        early, self._early = self._early, None
        _cancel(early)
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

    async def _load(self, found: dict[str, Versioned] | None = None) -> None:
        """Read the stored state; `found`: its metadata and custom status rows, when a
        status read already has them."""
        meta, status = self._key(METADATA_KEY), self._key(CUSTOM_STATUS_KEY)
        if found is None:
            found = await self.store.get_many([meta, status])
        if meta not in found:
            self.state, self.layout, self.version = None, StoredLayout(), 0
        else:
            short = {METADATA_KEY: found[meta].value}
            if status in found:
                short[CUSTOM_STATUS_KEY] = found[status].value
            keys = keys_to_load(found[meta].value)
            rows = await self.store.get_many([self._key(k) for k in keys])
            short.update({k: rows[self._key(k)].value for k in keys if self._key(k) in rows})
            self.state = load_state(short)
            self.version = found[meta].version
            self.layout = layout_of(self.state) if self.state is not None else StoredLayout()
        self.waits.changed(self.state)

    # ---- saving

    def _plan(self, state: WorkflowState) -> CheckpointPlan:
        """The transactions that save `state`; `CheckpointTooLargeError` when one of its
        rows cannot fit a transaction of this store (see `sidecar.workflow.limits`)."""
        return plan_checkpoint(self.layout, state, self.app_id, self.type, self.store.limits)

    async def _save(
        self,
        state: WorkflowState,
        *,
        plan: CheckpointPlan | None = None,
        reload_on_conflict: bool = True,
    ) -> None:
        """Checkpoint `state` (the caller holds the lock), by `plan` if the caller made
        it. The write is a task of its own, which a deactivation waits for (see
        `on_deactivate`). When another activation wrote first, the state is read again
        from the store and what it has pending is re-issued (that activation's effects
        may never have gone out)."""
        if plan is None:
            plan = self._plan(state)
        began = time.perf_counter()
        writing = asyncio.ensure_future(self._write(plan, state, self.version))
        writing.add_done_callback(_retrieve)
        self._writing = writing
        try:
            version = await asyncio.shield(writing)
            self.metrics.checkpoint_s.observe(time.perf_counter() - began)
        except ConflictError:
            if reload_on_conflict:
                log.warning("workflow %s: stored state moved under us; reloading", self.id)
                await self._load()
                self._reissue()
            raise
        self.state, self.layout, self.version = state, plan.layout, version
        self.waits.changed(state)

    async def _write(self, plan: CheckpointPlan, state: WorkflowState, version: int) -> int:
        index = index_key(self.app_id, self.id)
        for i, txn in enumerate(plan.transactions):
            writes = dict(txn.writes)
            if i == plan.final:
                writes[index] = b"0" if state.is_terminal else b"1"
            version = await self.store.transact(writes, expect=plan.expect(version))
        return version

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
        finished = _completed(self.state) or self._finished is not None
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
                    conflicts = 0
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
            log.exception("workflow %s: turn failed", self.id)

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
                _cancel(early)
                return False
            settled = settle(state, now_ms())
            if settled is not None:
                _cancel(early)
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
                result = apply_response(self.state, turn, response, now_ms())
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
        await self._save(result.state, plan=plan)
        for effect in rest:
            if isinstance(effect, Completed):
                self.metrics.finished_with(effect.status)
        self.effects.start(rest)

    # ---- the mailbox

    async def invoke(self, method: str, payload: bytes) -> Answer:
        handler = self._methods().get(method)
        if handler is None:
            raise ActorCallError(f"INVALID_ARGUMENT: unknown workflow actor method {method!r}")
        if not self._loaded and _summary_may_answer(method, payload):
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
                    _cancel(early)
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
            if self.state is not None and self.state.exists and not self.state.is_terminal:
                if d.get("child"):
                    return b""  # a parent's re-sent start: already running
                raise ActorCallError(f"ALREADY_EXISTS: an instance with id {self.id!r} is running")
            generation = self.state.generation + 1 if self.state is not None else 1
            state = self._started(event, generation)
            await self._save(state)
            self.metrics.started += 1
            self._arm_start(state)
        self._hurry_up()
        self.kick()
        return b""

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

    def _send_early(self, state: WorkflowState) -> _EarlyTurn | None:
        turn = plan_turn(state, now_ms())
        if turn is None:
            return None
        reply = asyncio.ensure_future(self.apps.run_workflow(turn.request, turn.past))
        return _EarlyTurn(turn, reply)

    def _started(self, event: pb.HistoryEvent, generation: int) -> WorkflowState:
        """A new execution (`generation`) of this instance, holding its start `event`."""
        started = event.executionStarted
        started.workflowInstance.executionId.value = continued_execution_id(self.id, generation)
        return add_events(new_state(self.id, generation), [event])

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
                raise _has_finished(self.id)
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
        return self._instance(payload, self.state)

    @staticmethod
    def _instance(payload: bytes, state: WorkflowState | None) -> bytes:
        with_io = bool(msgpack.unpackb(payload)) if payload else True
        return instance_response(state, with_io).SerializeToString()

    async def _wait(self, payload: bytes) -> Answer:
        """Answer once the instance passes a test of WAIT_TESTS (`test`: "started" or
        "completed"), or after `s` seconds (at most WAIT_MAX_S) or when this activation
        leaves, whichever comes first: {"passed": bool, "r": GetInstanceResponse bytes,
        with inputs and outputs when `io`}. The turn ends at once; the answer is a future
        settled by the save that makes the instance pass, so a waiting caller costs the
        actor nothing in between."""
        test, with_io, bound = _wait_request(payload)

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
        recursive = _recursive(payload)
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

    async def _forget(self) -> None:
        """Delete every row of the instance (under the lock): nothing is stored now."""
        self._finished = None  # a deletion that fails midway: read the rows again
        await self._delete_rows()
        self.state, self.layout, self.version = None, StoredLayout(), 0
        self._loaded = True

    async def _delete_rows(self) -> None:
        await delete_rows(self.store, self.app_id, self.namespace, self.type, self.id)
