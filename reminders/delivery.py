"""Sending triggers out and taking acknowledgements back: the subscribers, the firings in
flight, retries with backoff, and progress recorded through Raft in batches (the "Firing"
and "Acknowledgement" parts of the `firing` module docstring).

`Delivery` holds all of the dispatcher's state; `firing.Dispatcher` extends it with the
loop and leadership. It is one class split over two files to keep each near 400 lines: every
method still runs on the dispatcher's one task, so the state keeps a single owner.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from raftkit.codec import Command
from raftkit.errors import NotLeaderError, RaftError
from raftkit.node import RaftNode
from reminders.api.v1 import reminders_pb2 as pb
from reminders.config import RemindersConfig
from reminders.convert import key_to_proto
from reminders.firing_events import (
    AckIn,
    AppId,
    Clock,
    Event,
    ProgressDone,
    Subscriber,
    SystemClock,
)
from reminders.machine import Key
from reminders.replica import Replica
from reminders.schedule import DueQueue
from reminders.sizing import MAX_COMMAND_BYTES, item_size

__all__ = ["Delivery", "Firing"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Firing:
    key: Key
    generation: int
    due_ms: int
    attempt: int
    subscriber: Subscriber
    deadline: float


class Delivery:
    """The dispatcher's state, and its delivery half (see the module docstring).

    Every attribute is set here, the loop's and leadership's too, because both halves read
    `_term` and `_firing` and leadership resets what delivery fills.
    """

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
