"""Schedule math of a reminder and the queue of due reminders. Pure: time is passed in.

A reminder's schedule is a `ScheduleState`: when it is next due, how many firings are
left, its period and its expiry. `plan` builds it from the request fields and
`after_fire` advances it once a firing has been acknowledged. `DueQueue` orders many
reminders by due time for the shell's firing loop.

Policy:

- A firing is due at `next_due_ms` and may happen at any later time (at least once, never
  early). Only an acknowledged firing counts towards the repetition count.
- Missed slots are skipped, not replayed: after an ack at `t`, the next due time is the
  first slot `next_due_ms + k * interval_ms` (k >= 1) strictly after `t`. A reminder
  that was unreachable for an hour fires once when it comes back, not sixty times in a
  burst, and stays on its original grid (its phase does not drift with ack latency).
- A slot is allowed while `slot <= expires_ms`; whichever of the ttl and the repetition
  count ends first ends the reminder.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from reminders.durations import Period, parse_due_time, parse_period, parse_ttl
from reminders.errors import InvalidReminderError

__all__ = [
    "DueQueue",
    "ScheduleState",
    "after_fire",
    "check_schedule",
    "next_slot_after",
    "plan",
    "plan_parsed",
]

K = TypeVar("K", bound=Hashable)

# Rebuild the heap when stale entries outnumber live ones by this factor (plus a floor,
# so that tiny queues are not rebuilt all the time): keeps memory O(live entries).
_COMPACT_FACTOR = 2
_COMPACT_FLOOR = 1024


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """Where a reminder stands.

    INVARIANT: `remaining` is None (no cap) or >= 1 and counts the firing at
    `next_due_ms`; a one-shot reminder has `interval_ms` None and `remaining` 1;
    `expires_ms` is None or >= `next_due_ms`.
    """

    next_due_ms: int
    remaining: int | None
    interval_ms: int | None
    expires_ms: int | None

    def __post_init__(self) -> None:
        check_schedule(self.next_due_ms, self.remaining, self.interval_ms, self.expires_ms)


def check_schedule(
    next_due_ms: int, remaining: int | None, interval_ms: int | None, expires_ms: int | None
) -> None:
    """Raise ValueError unless the four fields hold `ScheduleState`'s invariant (the
    replicated table checks schedule rows with it without building a `ScheduleState`)."""
    if interval_ms is not None and interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    if remaining is not None and remaining < 1:
        raise ValueError(f"remaining must be None or >= 1, got {remaining}")
    if interval_ms is None and remaining != 1:
        raise ValueError("a one-shot schedule (interval_ms None) must have remaining 1")
    if expires_ms is not None and expires_ms < next_due_ms:
        raise ValueError(f"expires_ms {expires_ms} is before next_due_ms {next_due_ms}")


def plan(due_time: str, period: str, ttl: str, now_ms: int) -> ScheduleState:
    """The initial schedule of a reminder registered at `now_ms` with these request fields.

    Raises `InvalidReminderError` naming the offending field, "ttl" when the reminder
    would expire before it is first due.
    """
    due_ms = parse_due_time(due_time, now_ms)
    parsed_period = parse_period(period)
    expires_ms = parse_ttl(ttl, now_ms)
    if expires_ms is not None and expires_ms < due_ms:
        raise InvalidReminderError(
            "ttl",
            f"invalid ttl {ttl!r}: the reminder would expire at {expires_ms} ms, "
            f"before it is first due at {due_ms} ms",
        )
    return plan_parsed(due_ms, parsed_period, expires_ms)


def plan_parsed(due_ms: int, period: Period | None, expires_ms: int | None) -> ScheduleState:
    """The initial schedule from already parsed fields; see `plan`."""
    if expires_ms is not None and expires_ms < due_ms:
        raise InvalidReminderError(
            "ttl", f"invalid ttl: expires at {expires_ms} ms, before the due time {due_ms} ms"
        )
    if period is None:
        return ScheduleState(
            next_due_ms=due_ms, remaining=1, interval_ms=None, expires_ms=expires_ms
        )
    return ScheduleState(
        next_due_ms=due_ms,
        remaining=period.repetitions,
        interval_ms=period.interval_ms,
        expires_ms=expires_ms,
    )


def after_fire(state: ScheduleState, acked_at_ms: int) -> ScheduleState | None:
    """The schedule after the firing due at `state.next_due_ms` was acknowledged.

    None when the reminder is finished: it was a one-shot, its count is used up, or its
    next slot falls after its expiry. Missed slots are skipped (see the module doc).
    """
    if state.interval_ms is None:
        return None
    remaining = None if state.remaining is None else state.remaining - 1
    if remaining == 0:
        return None
    next_due_ms = next_slot_after(state.next_due_ms, state.interval_ms, acked_at_ms)
    if state.expires_ms is not None and next_due_ms > state.expires_ms:
        return None
    return ScheduleState(
        next_due_ms=next_due_ms,
        remaining=remaining,
        interval_ms=state.interval_ms,
        expires_ms=state.expires_ms,
    )


def next_slot_after(due_ms: int, interval_ms: int, after_ms: int) -> int:
    """The first `due_ms + k * interval_ms` with k >= 1 that is strictly after `after_ms`."""
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms}")
    # An ack stamped before the due time (clock skew between nodes) still moves on by one.
    k = 1 if after_ms < due_ms else (after_ms - due_ms) // interval_ms + 1
    return due_ms + k * interval_ms


class DueQueue(Generic[K]):
    """Reminder keys ordered by due time: a heap with lazy deletion.

    Upsert and remove are O(log n) and O(1); a replaced or removed key leaves a stale
    heap entry behind, recognised by its sequence number and dropped when it surfaces.
    Keys due at the same time come out in the order they were last upserted.
    """

    def __init__(self) -> None:
        # INVARIANT: a heap entry (due_ms, seq, key) is live iff _live[key] == (due_ms, seq).
        # seq is unique, so the heap never compares keys (which need not be orderable).
        self._live: dict[K, tuple[int, int]] = {}
        self._heap: list[tuple[int, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def due_ms(self, key: K) -> int | None:
        """When `key` is due, or None if it is not queued."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def upsert(self, key: K, due_ms: int) -> None:
        """Queue `key` at `due_ms`, replacing any earlier due time of the same key."""
        self._seq += 1
        self._live[key] = (due_ms, self._seq)
        heapq.heappush(self._heap, (due_ms, self._seq, key))
        self._maybe_compact()

    def remove(self, key: K) -> bool:
        """Forget `key`; False if it was not queued."""
        if self._live.pop(key, None) is None:
            return False
        self._maybe_compact()
        return True

    def next_due_ms(self) -> int | None:
        """The earliest due time in the queue, or None when it is empty."""
        self._drop_stale_head()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int, limit: int | None = None) -> list[tuple[K, int]]:
        """Remove and return up to `limit` (key, due_ms) with due_ms <= now_ms, earliest first."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        out: list[tuple[K, int]] = []
        while limit is None or len(out) < limit:
            self._drop_stale_head()
            if not self._heap or self._heap[0][0] > now_ms:
                break
            due_ms, _, key = heapq.heappop(self._heap)
            del self._live[key]
            out.append((key, due_ms))
        return out

    def _drop_stale_head(self) -> None:
        heap = self._heap
        while heap and self._live.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        if len(self._heap) <= _COMPACT_FACTOR * len(self._live) + _COMPACT_FLOOR:
            return
        self._heap = [(due_ms, seq, key) for key, (due_ms, seq) in self._live.items()]
        heapq.heapify(self._heap)
