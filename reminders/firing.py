"""The leader's firing loop: due reminders out to sidecars, acknowledgements back to Raft.

One asyncio task (`Dispatcher.run`) owns every piece of mutable firing state: the due
queue, the subscribers, the firings in flight, the retry counts and the progress waiting
to be recorded. Stream handlers, the Raft tick thread (via `call_soon_threadsafe`) and
proposal tasks only put small frozen events on its queue.

Leadership. The loop acts for one term at a time. When Raft reports this node leader
with a quorum it commits a fenced `lead` no-op; once that is applied the replica holds
everything committed before, and the loop rebuilds its due queue from it (every node
keeps only the replicated table; followers hold no firing state). When the node stops
leading (another role, another term), the loop drops all firing state at once and
closes the trigger streams so that sidecars go and find the new leader, which re-fires
from the replicated schedule (at least once). While it still leads its term but has not
heard from a majority lately (followers busy on a loaded machine, or a partition that
will soon end its term), it fires and records nothing, and keeps its firings in flight
and its streams: dropping them on every such gap re-sent every firing in flight, and
the sidecars spent a reconnect backoff finding the same leader again (bursts of 100,000
triggers delivered at 12,000-23,000/s instead of 60,000-80,000/s, with tens of
thousands fired twice). Raft itself ends the term if the gap lasts
(`leader_fallback_timeout`), and every batch sent still carries the fenced term.

Firing. While firings are in flight, a reminder that falls due waits up to
`fire_linger_ms` for others, so that under load they leave in batches (as Nagle's
algorithm holds small segments while data is unacknowledged); with nothing in flight it
goes at once. Due keys are popped from the queue; for each the replica's current record
is read: a reminder deleted or moved later in the meantime is skipped (an event is on
its way), so nothing is ever sent before its replicated due time. Triggers go, grouped
per subscriber and `batch_size` per message, to a subscriber of the reminder's app
(namespace and app id) that declared its actor type, or declared none (round robin).
Right before every send the term fence is checked (`RaftNode.ensure_leader`); every
batch carries the term. With no subscriber, or all of them at `max_in_flight`, a
reminder waits in `_waiting` until one connects or frees capacity: it is never dropped.

Acknowledgement. A delivered firing is recorded through Raft as `progress` (key,
generation, due time, ack time), many per command, one command in flight at a time. Until
that commits, the key is in neither the queue nor in flight, so it is not fired again; the
change feed from the replica puts it back at its next due time (or forgets it). A failed
or timed out firing is retried with exponential backoff; a subscriber that goes away
fails its firings at once. A firing acknowledged but not yet recorded when the leader
dies fires again under the next leader: the at-least-once duplicate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from raftkit.codec import Command
from raftkit.errors import NotLeaderError, RaftError
from raftkit.node import Fence, RaftNode, RaftStatus, Role
from reminders.api.v1 import reminders_pb2 as pb
from reminders.config import RemindersConfig
from reminders.convert import key_to_proto
from reminders.machine import Change, Key
from reminders.replica import Replica
from reminders.schedule import DueQueue
from reminders.sizing import MAX_COMMAND_BYTES, item_size

__all__ = ["Clock", "Dispatcher", "Subscriber", "SystemClock"]

log = logging.getLogger(__name__)

AppId = tuple[str, str]  # (namespace, app id)


class Clock(Protocol):
    def wall_ms(self) -> int: ...
    def monotonic(self) -> float: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(eq=False, slots=True)
class Subscriber:
    """One WatchTriggers stream. The edge writes `outbox` to the wire."""

    host: str
    app: AppId
    actor_types: frozenset[str]
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    handler: asyncio.Task[object] | None = None
    closing: tuple[grpc.StatusCode, str] | None = None

    def serves(self, actor_type: str) -> bool:
        return not self.actor_types or actor_type in self.actor_types

    def close(self, code: grpc.StatusCode, message: str) -> None:
        if self.closing is None:
            self.closing = (code, message)
            # The handler closing its own stream is not cancelled: it is on its way out.
            if self.handler is not None and self.handler is not asyncio.current_task():
                self.handler.cancel()


@dataclass(slots=True)
class Firing:
    key: Key
    generation: int
    due_ms: int
    attempt: int
    subscriber: Subscriber
    deadline: float


# ---- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangesIn:
    seq: int
    changes: list[Change] | None


@dataclass(frozen=True, slots=True)
class RaftChanged:
    status: RaftStatus


@dataclass(frozen=True, slots=True)
class LeadCommitted:
    term: int


@dataclass(frozen=True, slots=True)
class SubscriberOpened:
    subscriber: Subscriber
    reply: asyncio.Future[int | None]  # the term served, or None: not the leader


@dataclass(frozen=True, slots=True)
class SubscriberClosed:
    subscriber: Subscriber


@dataclass(frozen=True, slots=True)
class AckIn:
    subscriber: Subscriber
    term: int
    delivered: tuple[int, ...]
    failed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProgressDone:
    items: list[list[object]]
    error: RaftError | None


Event = (
    ChangesIn
    | RaftChanged
    | LeadCommitted
    | SubscriberOpened
    | SubscriberClosed
    | AckIn
    | ProgressDone
)


class Dispatcher:
    def __init__(
        self,
        config: RemindersConfig,
        replica: Replica,
        raft: RaftNode,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._replica = replica
        self._raft = raft
        self._clock = clock or SystemClock()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._term = 0  # the term this node leads with a quorum; 0 when not leading
        self._firing = False  # the `lead` command of `_term` is applied
        self._snap_seq = 0
        self._queue: DueQueue[Key] = DueQueue()
        self._attempts: dict[Key, int] = {}
        self._waiting: dict[AppId, dict[Key, None]] = defaultdict(dict)
        self._subs: dict[AppId, list[Subscriber]] = defaultdict(list)
        self._rr = itertools.count()
        self._in_flight: dict[int, Firing] = {}
        self._fire_ids = itertools.count(1)
        self._progress: list[list[object]] = []
        self._recording = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Counters, for GetRemindersInfo and the tests' logs.
        self.fired = 0
        self.acked = 0
        self.retried = 0

    # ---- inputs (event loop thread) ------------------------------------------------------

    def post(self, event: Event) -> None:
        self._events.put_nowait(event)

    @property
    def term(self) -> int:
        return self._term

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subs.values())

    # ---- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                timeout = self._wake_in_s()
                try:
                    async with asyncio.timeout(timeout):
                        event: Event | None = await self._events.get()
                except TimeoutError:
                    event = None
                while event is not None:
                    self._handle(event)
                    event = self._events.get_nowait() if not self._events.empty() else None
                self._step()
        finally:
            self._lose("node stopping")
            for task in list(self._tasks):
                task.cancel()

    def _handle(self, event: Event) -> None:
        match event:
            case ChangesIn(seq, changes):
                self._changes(seq, changes)
            case RaftChanged(status):
                self._raft_changed(status)
            case LeadCommitted(term):
                if term == self._term and not self._firing:
                    self._start_firing()
            case SubscriberOpened(sub, reply):
                reply.set_result(self._open(sub))
            case SubscriberClosed(sub):
                self._closed(sub)
            case AckIn():
                self._ack(event)
            case ProgressDone(items, error):
                self._recorded(items, error)
            case _:
                raise TypeError(f"unknown dispatcher event {event!r}")

    def _step(self) -> None:
        if not self._firing:
            return
        fence = self._raft.fence(self._term)
        if fence is Fence.GAP:
            return  # no recent quorum: fire and record nothing until it is back
        if fence is Fence.LOST:
            self._lose(f"not the leader of term {self._term} any more")
            return
        self._expire(self._clock.monotonic())
        now_ms = self._clock.wall_ms()
        fire_at = self._fire_at_ms()
        if fire_at is not None and fire_at <= now_ms:
            self._fire(now_ms)
        self._flush_progress()

    def _fire_at_ms(self) -> int | None:
        """When the next firing goes out: the earliest due time, plus the linger while
        firings are in flight (see the module docstring)."""
        nxt = self._queue.next_due_ms()
        if nxt is None or not self._in_flight:
            return nxt
        return nxt + self.config.fire_linger_ms

    def _wake_in_s(self) -> float | None:
        if not self._firing:
            return None if not self._term else 0.05
        waits: list[float] = [0.05]  # re-check the term fence and quorum at this pace
        fire_at = self._fire_at_ms()
        if fire_at is not None:
            waits.append(max(0.0, (fire_at - self._clock.wall_ms()) / 1000))
        if self._in_flight:
            first = next(iter(self._in_flight.values()))
            waits.append(max(0.0, first.deadline - self._clock.monotonic()))
        return min(waits)

    # ---- leadership ----------------------------------------------------------------------

    def _raft_changed(self, status: RaftStatus) -> None:
        leads = status.role is Role.LEADER and status.has_quorum
        if self._term and (status.role is not Role.LEADER or status.term != self._term):
            self._lose(f"raft status: role {status.role.name}, term {status.term}")
        if leads and self._term != status.term:
            self._term = status.term
            self._spawn(self._lead(status.term))

    async def _lead(self, term: int) -> None:
        delay_s = 0.05
        while True:
            try:
                await self._raft.propose(
                    Command("lead", {"term": term}), timeout=self.config.proposal_timeout_s
                )
            except NotLeaderError:
                return  # includes LeadershipLostError; a RaftChanged event follows
            except RaftError as exc:
                log.warning("reminders: lead command of term %d failed: %s", term, exc)
                if self._raft.leader_term() != term:
                    return
                await asyncio.sleep(delay_s)  # backoff before proposing again
                delay_s = min(1.0, delay_s * 2)
                continue
            self.post(LeadCommitted(term))
            return

    def _start_firing(self) -> None:
        seq, due = self._replica.due_snapshot()
        self._snap_seq = seq
        self._queue = DueQueue()
        for key, due_ms in due:
            self._queue.upsert(key, due_ms)
        self._firing = True
        log.info(
            "reminders: leading term %d, %d reminders scheduled",
            self._term,
            len(due),
            extra={"raft_term": self._term},
        )

    def _lose(self, why: str) -> None:
        if not self._term:
            return
        log.warning(
            "reminders: stop firing for term %d: %s",
            self._term,
            why,
            extra={"raft_term": self._term},
        )
        self._term, self._firing = 0, False
        self._queue = DueQueue()
        self._attempts.clear()
        self._waiting.clear()
        self._in_flight.clear()
        self._progress.clear()
        for subs in self._subs.values():
            for sub in subs:
                sub.in_flight = 0
                sub.close(grpc.StatusCode.UNAVAILABLE, "not the leader any more")
        self._subs.clear()

    # ---- replicated changes ----------------------------------------------------------------

    def _changes(self, seq: int, changes: list[Change] | None) -> None:
        if not self._firing or seq <= self._snap_seq:
            return
        if changes is None:  # the replica was restored from a snapshot
            self._start_firing()
            return
        queue, attempts = self._queue, self._attempts
        for key, due_ms in changes:
            attempts.pop(key, None)
            if due_ms is None:
                queue.remove(key)
                waiting = self._waiting.get(key[:2])
                if waiting:
                    waiting.pop(key, None)
            else:
                queue.upsert(key, due_ms)

    # ---- subscribers -----------------------------------------------------------------------

    def _open(self, sub: Subscriber) -> int | None:
        if not self._term:
            return None
        self._subs[sub.app].append(sub)
        self._release(sub.app, None)
        log.info("reminders: subscriber %s of %s/%s connected", sub.host, *sub.app)
        return self._term

    def _closed(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.app)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subs[sub.app]
        lost = [fid for fid, f in self._in_flight.items() if f.subscriber is sub]
        now = self._clock.monotonic()
        for fid in lost:
            self._retry(self._in_flight.pop(fid), now, backoff=False)
        log.info(
            "reminders: subscriber %s of %s/%s left (%d firings to resend)",
            sub.host,
            *sub.app,
            len(lost),
        )

    def _release(self, app: AppId, limit: int | None) -> None:
        """Put reminders that waited for a subscriber of `app` back in the queue."""
        waiting = self._waiting.get(app)
        if not waiting:
            return
        count = len(waiting) if limit is None else min(limit, len(waiting))
        for key in list(itertools.islice(waiting, count)):
            del waiting[key]
            found = self._replica.firing(key)
            if found is not None:
                self._queue.upsert(key, found[0])

    def _route(self, key: Key) -> Subscriber | None:
        subs = self._subs.get(key[:2])
        if not subs:
            return None
        start = next(self._rr)
        limit = self.config.max_in_flight
        for i in range(len(subs)):
            sub = subs[(start + i) % len(subs)]
            if sub.in_flight < limit and sub.serves(key[2]) and sub.closing is None:
                return sub
        return None

    # ---- firing ----------------------------------------------------------------------------

    def _fire(self, now_ms: int) -> None:
        capacity = self.config.max_in_flight * max(1, self.subscriber_count)
        budget = max(0, capacity - len(self._in_flight))
        if budget == 0:
            return
        due = self._queue.pop_due(now_ms, limit=budget)
        if not due:
            return
        deadline = self._clock.monotonic() + self.config.ack_timeout_s
        batches: dict[int, tuple[Subscriber, list[pb.Trigger]]] = {}
        lookup = self._replica.firing
        for key, _ in due:
            found = lookup(key)
            if found is None:
                continue  # deleted
            due_ms, generation, data = found
            if due_ms > now_ms:
                # Moved later (a replace, or a retry slot of a replaced reminder): never
                # early. Queued again at the replicated time; its change event may follow.
                self._queue.upsert(key, due_ms)
                continue
            sub = self._route(key)
            if sub is None:
                self._waiting[key[:2]][key] = None
                continue
            fid = next(self._fire_ids)
            attempt = self._attempts.pop(key, 0) + 1
            self._in_flight[fid] = Firing(key, generation, due_ms, attempt, sub, deadline)
            sub.in_flight += 1
            trigger = pb.Trigger(
                fire_id=fid,
                key=key_to_proto(key),
                data=data,
                due_ms=due_ms,
                sent_ms=now_ms,
                attempt=attempt,
            )
            batches.setdefault(id(sub), (sub, []))[1].append(trigger)
        size = self.config.batch_size
        for sub, triggers in batches.values():
            for i in range(0, len(triggers), size):
                chunk = triggers[i : i + size]
                sub.outbox.put_nowait(
                    pb.TriggerBatch(term=self._term, triggers=chunk).SerializeToString()
                )
            self.fired += len(triggers)

    def _expire(self, now: float) -> None:
        flights = self._in_flight
        while flights:
            fid, firing = next(iter(flights.items()))
            if firing.deadline > now:
                break
            del flights[fid]
            self._retry(firing, now, backoff=True)

    def _retry(self, firing: Firing, now: float, *, backoff: bool) -> None:
        firing.subscriber.in_flight -= 1
        self.retried += 1
        self._attempts[firing.key] = firing.attempt
        delay_s = 0.0
        if backoff:
            cfg = self.config
            delay_s = min(cfg.retry_max_s, cfg.retry_min_s * 2 ** (firing.attempt - 1))
        self._queue.upsert(firing.key, self._clock.wall_ms() + int(delay_s * 1000))

    # ---- acknowledgements and progress -----------------------------------------------------

    def _ack(self, ack: AckIn) -> None:
        if ack.term != self._term or not self._firing:
            return
        now_ms = self._clock.wall_ms()
        now = self._clock.monotonic()
        sub = ack.subscriber
        flights = self._in_flight
        for fid in ack.delivered:
            firing = flights.get(fid)
            if firing is None or firing.subscriber is not sub:
                continue
            del flights[fid]
            sub.in_flight -= 1
            self.acked += 1
            self._progress.append([list(firing.key), firing.generation, firing.due_ms, now_ms])
        for fid in ack.failed:
            firing = flights.get(fid)
            if firing is None or firing.subscriber is not sub:
                continue
            del flights[fid]
            self._retry(firing, now, backoff=True)
        if self._waiting.get(sub.app):
            self._release(sub.app, self.config.max_in_flight - sub.in_flight)

    def _flush_progress(self) -> None:
        if self._recording or not self._progress:
            return
        limit = self.config.progress_batch
        items: list[list[object]] = []
        used = 0
        for item in itertools.islice(self._progress, limit):
            size = item_size(item)
            if items and used + size > MAX_COMMAND_BYTES:
                break
            items.append(item)
            used += size
        del self._progress[: len(items)]
        self._recording = True
        self._spawn(self._record(items))

    async def _record(self, items: list[list[object]]) -> None:
        error: RaftError | None = None
        try:
            await self._raft.propose(
                Command("progress", {"items": items}), timeout=self.config.proposal_timeout_s
            )
        except RaftError as exc:
            error = exc
        self.post(ProgressDone(items, error))

    def _recorded(self, items: list[list[object]], error: RaftError | None) -> None:
        self._recording = False
        if error is None or not self._firing:
            return
        if isinstance(error, NotLeaderError):
            return  # a RaftChanged event follows; the next leader re-fires
        # Outcome unknown or refused: recording the same firings again is harmless (the
        # replica ignores a firing it already recorded).
        log.warning("reminders: recording %d firings failed, retrying: %s", len(items), error)
        self._progress[:0] = items

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
