"""An instance's state as the workflow actor holds it: read from the store once (or
only its summary rows, for a finished instance), events folded in under the lock, and
checkpoints written (one guarded store transaction per turn, chunked only past the
store's limits). `WorkflowRunner` (the orchestration runner) and `WorkflowActor` (the
mailbox) build on it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import msgpack

from sidecar.actors.base import REMINDER_METHOD, ActorContext
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.effects import EffectRunner
from sidecar.engine.naming import activity_prefixes, index_key
from sidecar.engine.purge import delete_rows
from sidecar.engine.status import instance_response
from sidecar.engine.waits import StateWaits
from sidecar.engine.workflow_requests import (
    client_event_when_finished,
    event_request,
    instance_answer,
    is_recursive,
    needs_history,
    wait_request,
)
from sidecar.store import ConflictError, Versioned
from sidecar.workflow import (
    CUSTOM_STATUS_KEY,
    METADATA_KEY,
    CheckpointPlan,
    Finished,
    StoredLayout,
    WorkflowState,
    add_events,
    keys_to_load,
    layout_of,
    load_finished,
    load_state,
    payload_limit,
    pending_work,
    plan_checkpoint,
    store_key,
)

__all__ = ["SavedWorkflow", "retrieve"]

log = logging.getLogger(__name__)

_SUMMARY = (METADATA_KEY, CUSTOM_STATUS_KEY)  # the rows a finished instance's status needs


def retrieve(done: asyncio.Future[Any]) -> None:
    """A write whose saver went away (cancelled) still has its error read here."""
    if not done.cancelled():
        done.exception()


class SavedWorkflow:
    """The state, its stored layout and version, and the lock every change takes."""

    def __init__(self, ctx: ActorContext) -> None:
        s = ctx.services
        self.id = ctx.actor_id
        self.type = ctx.actor_type
        self.store = s.store
        self.app_id: str = s.app_id
        self.namespace: str = s.namespace
        self.router = s.router
        self.cluster_apps = s.cluster_apps
        self.sweep = s.activity_sweep
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
        self._loaded = False  # the stored state was read (or written by a new start)
        # A finished instance as its summary rows hold it, without its history
        # (`_summary_answer`): kept while only calls that need no more come.
        self._finished: Finished | None = None
        self._writing: asyncio.Future[int] | None = None  # the checkpoint being written

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
        """A call on a finished instance not loaded yet (see `summary_may_answer`),
        answered from its metadata and custom status rows instead of loading a history
        that may hold tens of thousands of events (a finished instance's actor leaves
        after FINISHED_IDLE_S; a dashboard may ask again and again, a clean-up job purges
        it). A status read reports what these rows hold, a client's event is refused (a
        terminate of a terminated instance is answered OK), a late outcome or timer is
        dropped, a purge deletes the rows. None when that is not enough: the instance is
        not finished, a client's raise, suspend or resume may be a copy the history
        holds, or a recursive purge may have children to visit; the whole state is then
        loaded and the method answers as usual."""
        finished = await self._read_finished()
        if finished is None:
            return None
        if method in ("event", REMINDER_METHOD):
            answer = self._finished_event(finished.state, method, payload)
            if answer is None:
                await self._ensure_loaded()
            return answer
        match method:
            case "get":
                return instance_answer(payload, finished.state)
            case "wait":
                _test, with_io, _bound = wait_request(payload)  # a finished one passes both
                r = instance_response(finished.state, with_io).SerializeToString()
                return bytes(msgpack.packb({"passed": True, "r": r}))
        if is_recursive(payload) and finished.has_children is not False:
            await self._ensure_loaded()
            return None
        async with self._lock:
            await self._forget()
        self.waits.changed(None)
        return b"1"

    def _finished_event(self, state: WorkflowState, method: str, payload: bytes) -> bytes | None:
        """A timer or a late outcome is dropped: a finished instance takes neither. A
        client's event gets `client_event_when_finished`'s answer; None when that needs
        the history, which the summary rows do not carry."""
        request = event_request(payload) if method == "event" else None
        if request is None or not request.get("durable"):
            return b""
        raw = request.get("e")
        event = pb.HistoryEvent.FromString(raw) if isinstance(raw, bytes) else None
        if needs_history(event):
            return None
        return client_event_when_finished(self.id, state, event)

    def _reissue(self) -> None:
        """Re-issue what the state has pending (its activities, timers, children...):
        after a load, the actors that were carrying it out may be gone."""
        if self.state is not None and not self.state.is_terminal:
            self.effects.start(pending_work(self.state))

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
        writing.add_done_callback(retrieve)
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
        previous = self.state
        self.state, self.layout, self.version = state, plan.layout, version
        self.waits.changed(state)
        if previous is not None and state.generation > previous.generation:
            self._superseded(state.generation)

    async def _write(self, plan: CheckpointPlan, state: WorkflowState, version: int) -> int:
        index = index_key(self.app_id, self.id)
        for i, txn in enumerate(plan.transactions):
            writes = dict(txn.writes)
            if i == plan.final:
                writes[index] = b"0" if state.is_terminal else b"1"
            version = await self.store.transact(writes, expect=plan.expect(version))
        return version

    def _superseded(self, generation: int) -> None:
        """A new generation is saved: the rows of older generations' activities are
        garbage, for the sidecar's sweep (`sidecar.engine.activity_sweep`)."""
        if self.sweep is not None:
            prefixes = activity_prefixes(self.app_id, self.namespace, self.id, self.cluster_apps())
            self.sweep.superseded(prefixes, generation)

    async def _forget(self) -> None:
        """Delete every row of the instance (under the lock): nothing is stored now."""
        self._finished = None  # a deletion that fails midway: read the rows again
        await self._delete_rows()
        self.state, self.layout, self.version = None, StoredLayout(), 0
        self._loaded = True

    async def _delete_rows(self) -> None:
        await delete_rows(
            self.store, self.app_id, self.namespace, self.type, self.id,
            other_apps=self.cluster_apps(),
        )  # fmt: skip
