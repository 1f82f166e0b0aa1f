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

Where it lives: this module holds the loop and leadership (`Dispatcher`); `delivery` the
firing and acknowledgement parts (its base class `Delivery`, with all the state);
`firing_events` the clock, the subscribers and the events.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from raftkit.codec import Command
from raftkit.errors import NotLeaderError, RaftError
from raftkit.node import Fence, RaftStatus, Role
from reminders.delivery import Delivery
from reminders.firing_events import (
    AckIn,
    ChangesIn,
    Clock,
    Event,
    LeadCommitted,
    ProgressDone,
    RaftChanged,
    Subscriber,
    SubscriberClosed,
    SubscriberOpened,
    SystemClock,
)
from reminders.machine import Change
from reminders.schedule import DueQueue

__all__ = [
    "AckIn",
    "ChangesIn",
    "Clock",
    "Dispatcher",
    "RaftChanged",
    "Subscriber",
    "SubscriberClosed",
    "SubscriberOpened",
    "SystemClock",
]

log = logging.getLogger(__name__)


class Dispatcher(Delivery):
    """The leader's firing loop; its state and the sending, acknowledgement and recording
    that the loop drives are in the `Delivery` base class."""

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
