"""Work items for connected apps: the GetWorkItems streams and their completions.

Apps pull work: each `GetWorkItems` stream is a connection that takes work items from
two shared queues (workflow turns, activities), so several replicas of an app share the
load. A connection may be limited to a window of unanswered items per kind (see
`DEFAULT_ACTIVITY_WINDOW`); the rest wait here and go to whichever connection frees a
slot first. A work item carries a completion token; the app's CompleteOrchestratorTask /
CompleteActivityTask answers resolve the waiting caller by that token, which is unique
to this sidecar process (an app that outlived an earlier one may still answer that
one's items here). When a stream ends, the items it had taken and not answered go back
to the front of their queue for the next connection (the same app reconnecting, or
another replica). Answers for unknown tokens (duplicates, items re-dispatched and
answered twice, items of an earlier process) are acknowledged and dropped; an answer of
the other kind under an item's token (an activity outcome for a turn) is refused, and
the item waits on.

Stateful history: an app whose GetWorkItems request announces
`WORKER_CAPABILITY_STATEFUL_HISTORY` keeps, per instance and per stream, the committed
history it replayed last (its `pastEvents`). For such a stream a workflow work item
carries only the committed events beyond that prefix, with `cachedHistory.eventCount`
naming the prefix's length, so neither side encodes and parses the whole history on
every turn. `_HeldHistories` tracks what each stream holds; a prefix is reused only
when its length fits and its first and last events are the same bytes (a new execution
after continue-as-new, or any rewritten history, gets the full history again). If the
app no longer holds the prefix (it evicted it), it asks GetInstanceHistory, which
answers the committed history, the same events.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb

log = logging.getLogger(__name__)


History = Sequence[pb.HistoryEvent]


class WorkItemTooLargeError(Exception):
    """A work item over the largest message this sidecar sends (`--max-payload-bytes`):
    it is not sent (gRPC would refuse it and end the stream, the app would reconnect,
    and the item would come back for ever, holding up every other item of the app)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"its work item for the app is {size} bytes, over this sidecar's limit of "
            f"{limit} bytes per message (--max-payload-bytes)"
        )
        self.size, self.limit = size, limit


class AnswerKindError(Exception):
    """An answer under the token of a work item of the other kind."""

    def __init__(self, token: str, workflow: bool) -> None:
        mine, other = (
            ("a workflow turn", "an activity") if workflow else ("an activity", "a workflow turn")
        )
        super().__init__(f"completion token {token!r} names {mine}, not {other}")


@dataclass(eq=False, slots=True)
class _Pending:
    item: pb.WorkItem  # a workflow item without its pastEvents: they are `past`
    reply: asyncio.Future[Any]
    workflow: bool
    past: History = ()
    queued: bool = True
    taken_by: int | None = None


# How many work items one app connection may hold unanswered, per kind; 0: no limit.
# The SDK declares no limit of its own on the stream and queues whatever arrives. No
# limit is the default because it measured fastest: with a window of 64 activities a
# 10,000-activity fan-out ran at half the rate (bench/RESULTS.md, 2026-11-26), although
# the SDK's dispatcher scans every item it holds for each one it takes. A window bounds
# what one replica holds (its memory, and what waits on it if it stalls).
DEFAULT_ACTIVITY_WINDOW = 0
DEFAULT_WORKFLOW_WINDOW = 0


@dataclass(eq=False, slots=True)
class _Connection:
    """One GetWorkItems stream: what it holds unanswered, and its wake-up."""

    id: int
    taken: set[_Pending] = field(default_factory=set)
    activities: int = 0
    workflows: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def settled(self, pending: _Pending, _done: object) -> None:
        if pending in self.taken:
            self.taken.discard(pending)
            if pending.workflow:
                self.workflows -= 1
            else:
                self.activities -= 1
            self.wake.set()


MAX_HELD_INSTANCES = 100_000  # the SDK's own default cap on cached instances


class _HeldHistories:
    """What one stateful-history stream holds: instance id -> (length, first, last)."""

    def __init__(self, limit: int = MAX_HELD_INSTANCES) -> None:
        self._held: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        self._limit = limit

    def forget(self, instance_id: str) -> None:
        """The item `shape` made for `instance_id` was not sent after all."""
        self._held.pop(instance_id, None)

    def shape(self, item: pb.WorkItem, past: History) -> pb.WorkItem:
        """The item to send on this stream with its history `past`: only the events
        beyond a prefix the stream holds, or all of them."""
        iid = item.workflowRequest.instanceId
        if not past:
            self._held.pop(iid, None)
            return item
        mark = (len(past), hash(past[0].SerializeToString()), hash(past[-1].SerializeToString()))
        held = self._held.pop(iid, None)
        self._held[iid] = mark
        if len(self._held) > self._limit:
            self._held.popitem(last=False)
        if held is None or not _same_prefix(past, held, mark):
            return with_history(item, past)
        delta = with_history(item, past[held[0] :])
        delta.workflowRequest.cachedHistory.eventCount = held[0]
        return delta


def with_history(item: pb.WorkItem, past: History) -> pb.WorkItem:
    """A copy of the workflow work item `item` whose pastEvents are `past` (the item
    itself when there are none): the one place a history is copied into a message."""
    if not past:
        return item
    out = pb.WorkItem()
    out.CopyFrom(item)
    out.workflowRequest.pastEvents.extend(past)
    return out


def _same_prefix(past: Any, held: tuple[int, int, int], mark: tuple[int, int, int]) -> bool:
    """Whether `past` (whose own mark is `mark`) extends the held prefix; hashes already
    taken for `mark` are not taken again."""
    count, first, last = held
    if count > len(past) or first != mark[1]:
        return False
    at_end = mark[2] if count == len(past) else hash(past[count - 1].SerializeToString())
    return at_end == last


def _pop_live(queue: deque[_Pending]) -> _Pending | None:
    """The first queued item whose caller still waits (the others are dropped)."""
    while queue:
        pending = queue.popleft()
        pending.queued = False
        if not pending.reply.done():
            return pending
    return None


@dataclass(slots=True)
class AppConnections:
    """Owned by the sidecar's event loop; shared by the TaskHub servicer and the actors.

    Two queues (workflow turns, activities) so that a connection whose activity window
    is full still takes turns, and long activities cannot hold up every workflow."""

    activity_window: int = DEFAULT_ACTIVITY_WINDOW
    workflow_window: int = DEFAULT_WORKFLOW_WINDOW
    # The largest work item sent, in bytes (the gRPC server's send limit); 0: no limit.
    max_item_bytes: int = 0
    _workflows: deque[_Pending] = field(default_factory=deque)
    _activities: deque[_Pending] = field(default_factory=deque)
    _idle: set[_Connection] = field(default_factory=set)  # streams waiting for work
    _by_token: dict[str, _Pending] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Begins every completion token: an app that outlives this sidecar answers the
    # items it took from it on the next connection, maybe to the next incarnation of
    # this sidecar, whose counter starts again at 1. With the prefix such an answer
    # names no item there and is dropped; without it, it was given to whichever item
    # had drawn the same number (another activity's result, another workflow's turn).
    _token_prefix: str = field(default_factory=lambda: secrets.token_hex(6))
    connections: int = 0
    dispatched_workflows: int = 0  # work items handed to apps, per kind
    dispatched_activities: int = 0
    refused_items: int = 0  # over `max_item_bytes`: failed instead of sent

    def __post_init__(self) -> None:
        if self.activity_window < 0 or self.workflow_window < 0:
            raise ValueError("the app connection windows must be 0 (no limit) or more")

    @property
    def dispatched(self) -> int:
        return self.dispatched_workflows + self.dispatched_activities

    @property
    def queued_workflows(self) -> int:
        """Turns waiting for an app to take them."""
        return len(self._workflows)

    @property
    def queued_activities(self) -> int:
        """Activities waiting for an app to take them."""
        return len(self._activities)

    def _queue(self, pending: _Pending) -> deque[_Pending]:
        return self._workflows if pending.workflow else self._activities

    async def run_workflow(
        self, request: pb.WorkflowRequest, past: History = ()
    ) -> pb.WorkflowResponse:
        """One turn: `request` with the committed history `past` as its pastEvents,
        added when a connection takes it (only the part that connection lacks)."""
        if past and request.pastEvents:
            raise ValueError("the history goes either in request.pastEvents or in past")
        item = pb.WorkItem(workflowRequest=request)
        result: pb.WorkflowResponse = await self._submit(item, workflow=True, past=past)
        return result

    async def run_activity(self, request: pb.ActivityRequest) -> pb.ActivityResponse:
        item = pb.WorkItem(activityRequest=request)
        result: pb.ActivityResponse = await self._submit(item, workflow=False)
        return result

    async def _submit(self, item: pb.WorkItem, *, workflow: bool, past: History = ()) -> Any:
        token = f"{self._token_prefix}-{next(self._ids)}"
        item.completionToken = token
        pending = _Pending(item, asyncio.get_running_loop().create_future(), workflow, past)
        self._by_token[token] = pending
        self._queue(pending).append(pending)
        self._wake_idle()
        try:
            return await pending.reply
        finally:
            self._by_token.pop(token, None)
            if pending.queued:  # the caller gave up before any app took it
                self._queue(pending).remove(pending)
                pending.queued = False

    def _wake_idle(self) -> None:
        for conn in self._idle:
            conn.wake.set()

    def complete(self, token: str, response: pb.WorkflowResponse | pb.ActivityResponse) -> bool:
        """Resolve the caller waiting on `token`; False when nobody is (a duplicate).
        `AnswerKindError` when `token` names an item of the other kind (an activity's
        outcome given for a turn, say): the item waits for its right answer."""
        pending = self._by_token.get(token)
        if pending is None or pending.reply.done():
            return False
        if isinstance(response, pb.WorkflowResponse) != pending.workflow:
            raise AnswerKindError(token, pending.workflow)
        pending.reply.set_result(response)
        return True

    def _take(self, conn: _Connection) -> _Pending | None:
        """The next item this connection may take: turns first, within its windows."""
        if not self.workflow_window or conn.workflows < self.workflow_window:
            pending = _pop_live(self._workflows)
            if pending is not None:
                conn.workflows += 1
                return pending
        if not self.activity_window or conn.activities < self.activity_window:
            pending = _pop_live(self._activities)
            if pending is not None:
                conn.activities += 1
                return pending
        return None

    def _shaped(self, pending: _Pending, held: _HeldHistories | None) -> pb.WorkItem | None:
        """The message for `pending` on a stream (its history as that stream needs
        it), or None when it is over `max_item_bytes`: its caller is told instead."""
        if not pending.workflow:
            item = pending.item
        elif held is None:
            item = with_history(pending.item, pending.past)
        else:
            item = held.shape(pending.item, pending.past)
        if not self.max_item_bytes:
            return item
        size = item.ByteSize()
        if size <= self.max_item_bytes:
            return item
        if held is not None and pending.workflow:
            held.forget(pending.item.workflowRequest.instanceId)
        self.refused_items += 1
        pending.reply.set_exception(WorkItemTooLargeError(size, self.max_item_bytes))
        return None

    async def stream(self, stateful_history: bool = False) -> AsyncGenerator[pb.WorkItem, None]:
        """One app connection: yields work items until the app goes away. With
        `stateful_history`, workflow items carry only what the app does not hold yet."""
        conn = _Connection(next(self._ids))
        held = _HeldHistories() if stateful_history else None
        self.connections += 1
        try:
            while True:
                pending = self._take(conn)
                if pending is None:
                    conn.wake.clear()
                    self._idle.add(conn)
                    try:
                        await conn.wake.wait()
                    finally:
                        self._idle.discard(conn)
                    continue
                pending.taken_by = conn.id
                conn.taken.add(pending)
                pending.reply.add_done_callback(partial(conn.settled, pending))
                item = self._shaped(pending, held)
                if item is None:
                    continue
                if pending.workflow:
                    self.dispatched_workflows += 1
                else:
                    self.dispatched_activities += 1
                yield item
        finally:
            self.connections -= 1
            requeue = [p for p in conn.taken if not p.reply.done()]
            conn.taken.clear()
            if requeue:
                log.info("app connection closed: %d work items go back to the queue", len(requeue))
                for pending in reversed(requeue):
                    pending.queued = True
                    self._queue(pending).appendleft(pending)
                self._wake_idle()
