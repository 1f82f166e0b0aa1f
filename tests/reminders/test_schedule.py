"""Schedule math and the due queue, driven by a fake clock (plain integers)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from reminders.durations import Period
from reminders.errors import InvalidReminderError
from reminders.schedule import (
    DueQueue,
    ScheduleState,
    after_fire,
    next_slot_after,
    plan,
    plan_parsed,
)

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=150)

NOW = 1_700_000_000_000
S = 1000


# --- plan ---------------------------------------------------------------------------


def test_plan_one_shot() -> None:
    assert plan("10s", "", "", NOW) == ScheduleState(NOW + 10 * S, 1, None, None)
    assert plan("", "", "", NOW) == ScheduleState(NOW, 1, None, None)


def test_plan_periodic() -> None:
    assert plan("", "R5/PT10S", "1m", NOW) == ScheduleState(NOW, 5, 10 * S, NOW + 60 * S)
    assert plan("1s", "R/PT10S", "", NOW) == ScheduleState(NOW + S, None, 10 * S, None)
    assert plan("", "2s", "", NOW) == ScheduleState(NOW, None, 2 * S, None)


def test_plan_ttl_equal_to_due_fires_once() -> None:
    state = plan("10s", "1s", "10s", NOW)
    assert state.next_due_ms == state.expires_ms
    assert after_fire(state, NOW + 10 * S) is None


@pytest.mark.parametrize(
    ("due_time", "ttl"),
    [("10s", "5s"), ("2030-01-01T00:00:00Z", "1h"), ("", "2000-01-01T00:00:00Z")],
)
def test_plan_rejects_ttl_before_due(due_time: str, ttl: str) -> None:
    with pytest.raises(InvalidReminderError) as info:
        plan(due_time, "1s", ttl, NOW)
    assert info.value.field == "ttl"
    assert ttl in str(info.value)


@pytest.mark.parametrize(
    ("due_time", "period", "ttl", "field"),
    [("x", "1s", "", "due_time"), ("", "R0/PT1S", "", "period"), ("", "", "-1s", "ttl")],
)
def test_plan_names_the_bad_field(due_time: str, period: str, ttl: str, field: str) -> None:
    with pytest.raises(InvalidReminderError) as info:
        plan(due_time, period, ttl, NOW)
    assert info.value.field == field


def test_plan_parsed_checks_ttl() -> None:
    with pytest.raises(InvalidReminderError) as info:
        plan_parsed(100, Period(10), 99)
    assert info.value.field == "ttl"


@pytest.mark.parametrize(
    "args",
    [
        (0, 0, 10, None),
        (0, None, 0, None),
        (0, None, None, None),
        (0, 2, None, None),
        (10, 1, 5, 9),
    ],
)
def test_state_invariants(args: tuple[int, int | None, int | None, int | None]) -> None:
    with pytest.raises(ValueError):
        ScheduleState(*args)


# --- after_fire ---------------------------------------------------------------------


def test_one_shot_finishes() -> None:
    assert after_fire(plan("", "", "", NOW), NOW) is None


def test_prompt_ack_moves_one_period() -> None:
    state = plan("", "10s", "", NOW)
    assert after_fire(state, NOW) == ScheduleState(NOW + 10 * S, None, 10 * S, None)


@pytest.mark.parametrize(
    ("acked_at", "next_due"),
    [
        (999, 1100),  # ack stamped before due (clock skew): still one period on
        (1000, 1100),
        (1099, 1100),
        (1100, 1200),  # strictly after the ack
        (1350, 1400),  # missed 1100..1300 are skipped, not replayed
        (10_000, 10_100),
    ],
)
def test_late_ack_skips_missed_slots(acked_at: int, next_due: int) -> None:
    assert next_slot_after(1000, 100, acked_at) == next_due
    state = after_fire(ScheduleState(1000, 3, 100, None), acked_at)
    assert state == ScheduleState(next_due, 2, 100, None)


def test_skipped_slots_do_not_count() -> None:
    state: ScheduleState | None = plan("", "R2/PT1S", "", 0)
    assert state is not None
    state = after_fire(state, 3600 * S)  # an hour late: one firing, not 3600
    assert state == ScheduleState(3601 * S, 1, S, None)
    assert after_fire(state, 3601 * S) is None


@pytest.mark.parametrize(("expires", "fires_again"), [(1099, False), (1100, True), (1101, True)])
def test_slot_at_expiry_still_fires(expires: int, fires_again: bool) -> None:
    after = after_fire(ScheduleState(1000, None, 100, expires), 1000)
    assert (after is not None) == fires_again


def test_next_slot_after_expiry_finishes() -> None:
    state = ScheduleState(1000, None, 100, 1250)
    after = after_fire(state, 1000)
    assert after == ScheduleState(1100, None, 100, 1250)
    assert after_fire(after, 1100) == ScheduleState(1200, None, 100, 1250)
    assert after_fire(ScheduleState(1200, None, 100, 1250), 1200) is None


# --- simulation with a fake clock ---------------------------------------------------


@dataclass
class Run:
    """What happened to one reminder in a simulation."""

    first: ScheduleState
    fired: list[tuple[int, int, int]] = field(default_factory=list)  # (due, fired, acked)
    last: ScheduleState | None = None  # the state of the last firing
    finished: bool = False


def run_one(state: ScheduleState, delays: st.DataObject, max_firings: int = 200) -> Run:
    """Fire `state` until it finishes: each firing is late and each ack later still."""
    run = Run(first=state)
    current: ScheduleState | None = state
    while current is not None and len(run.fired) < max_firings:
        fired_at = current.next_due_ms + delays.draw(lateness)
        acked_at = fired_at + delays.draw(lateness)
        run.fired.append((current.next_due_ms, fired_at, acked_at))
        run.last = current
        current = after_fire(current, acked_at)
    run.finished = current is None
    return run


# Mostly prompt, sometimes a few periods late, now and then very late.
lateness = st.one_of(
    st.just(0), st.integers(0, 50), st.integers(0, 5 * S), st.integers(0, 3_600 * S)
)
intervals = st.integers(1, 60 * S)


def check_run(run: Run) -> None:
    """Properties every run has, whatever the delays."""
    first = run.first
    previous_ack: int | None = None
    for due, fired_at, acked_at in run.fired:
        assert fired_at >= due  # never early
        assert first.expires_ms is None or due <= first.expires_ms
        if first.interval_ms is not None:
            assert (due - first.next_due_ms) % first.interval_ms == 0  # on the grid
        if previous_ack is not None:
            assert due > previous_ack  # missed slots do not burst
        previous_ack = acked_at
    if first.remaining is not None:
        assert len(run.fired) <= first.remaining


@SETTINGS
@given(st.integers(1, 20), intervals, st.data())
def test_count_fires_exactly_n_times(n: int, interval: int, data: st.DataObject) -> None:
    run = run_one(plan("", f"R{n}/PT{interval / 1000:.3f}S", "", NOW), data)
    check_run(run)
    assert run.finished
    assert len(run.fired) == n


@SETTINGS
@given(intervals, st.integers(0, 100), st.data())
def test_unlimited_fires_until_ttl(interval: int, slots: int, data: st.DataObject) -> None:
    ttl_ms = interval * slots + data.draw(st.integers(0, interval - 1))
    first = plan("", f"R/PT{interval / 1000:.3f}S", f"{ttl_ms}ms", NOW)
    run = run_one(first, data, max_firings=10_000)
    check_run(run)
    assert run.finished and run.last is not None
    _, _, last_ack = run.fired[-1]
    # It stopped because the next slot after the last ack is past the expiry.
    assert next_slot_after(run.last.next_due_ms, interval, last_ack) > NOW + ttl_ms


@SETTINGS
@given(st.integers(1, 50), intervals, st.integers(0, 100), st.data())
def test_prompt_acks_fire_min_of_count_and_ttl(
    n: int, interval: int, slots: int, data: st.DataObject
) -> None:
    ttl_ms = interval * slots + data.draw(st.integers(0, interval - 1))
    state: ScheduleState | None = plan_parsed(NOW, Period(interval, n), NOW + ttl_ms)
    firings = 0
    while state is not None:
        firings += 1
        state = after_fire(state, state.next_due_ms)
    assert firings == min(n, slots + 1)


@SETTINGS
@given(st.integers(1, 50), intervals, st.integers(0, 100), st.data())
def test_count_and_ttl_stop_at_the_earlier(
    n: int, interval: int, slots: int, data: st.DataObject
) -> None:
    first = plan_parsed(NOW, Period(interval, n), NOW + interval * slots)
    run = run_one(first, data)
    check_run(run)
    assert run.finished and run.last is not None
    assert len(run.fired) <= min(n, slots + 1)
    if len(run.fired) < n:  # not the count, so the ttl ended it
        _, _, last_ack = run.fired[-1]
        assert next_slot_after(run.last.next_due_ms, interval, last_ack) > NOW + interval * slots


@settings(SETTINGS, max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10 * S),  # due after NOW
            st.one_of(st.none(), st.integers(1, 5 * S)),  # interval
            st.one_of(st.none(), st.integers(1, 10)),  # repetitions
            st.one_of(st.none(), st.integers(0, 60 * S)),  # ttl after due
        ),
        min_size=1,
        max_size=20,
    ),
    st.data(),
)
def test_queue_and_clock_never_fire_early(
    specs: list[tuple[int, int | None, int | None, int | None]], data: st.DataObject
) -> None:
    """The shell's loop in miniature: a clock that jumps, a queue, late acks."""
    queue: DueQueue[int] = DueQueue()
    states: dict[int, ScheduleState] = {}
    for key, (due, interval, reps, ttl) in enumerate(specs):
        period = None if interval is None else Period(interval, reps)
        expires = None if ttl is None else NOW + due + ttl
        states[key] = plan_parsed(NOW + due, period, expires)
        queue.upsert(key, NOW + due)
    fired: dict[int, int] = dict.fromkeys(states, 0)
    now = NOW
    for _ in range(150):
        if not queue:
            break
        now += data.draw(st.integers(0, 2 * S))
        limit = data.draw(st.integers(1, 5))
        batch = queue.pop_due(now, limit)
        for key, due in batch:
            assert due == states[key].next_due_ms <= now  # never early
            fired[key] += 1
            acked_at = now + data.draw(lateness)
            after = after_fire(states.pop(key), acked_at)
            if after is not None:
                states[key] = after
                queue.upsert(key, after.next_due_ms)
        if len(batch) < limit:  # nothing due is left behind
            next_due = queue.next_due_ms()
            assert next_due is None or next_due > now
    for key, (_, interval, reps, _) in enumerate(specs):
        cap = 1 if interval is None else reps
        assert cap is None or fired[key] <= cap
    assert len(queue) == len(states)
    for key, state in states.items():
        assert queue.due_ms(key) == state.next_due_ms


# --- DueQueue -----------------------------------------------------------------------


class NaiveQueue:
    """The obvious model: a dict, sorted on every question."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, int]] = {}
        self.seq = 0

    def upsert(self, key: int, due: int) -> None:
        self.seq += 1
        self.entries[key] = (due, self.seq)

    def remove(self, key: int) -> bool:
        return self.entries.pop(key, None) is not None

    def pop_due(self, now: int, limit: int | None) -> list[tuple[int, int]]:
        ready = sorted((due, seq, key) for key, (due, seq) in self.entries.items() if due <= now)
        taken = ready if limit is None else ready[:limit]
        for _, _, key in taken:
            del self.entries[key]
        return [(key, due) for due, _, key in taken]

    def next_due(self) -> int | None:
        return min((due for due, _ in self.entries.values()), default=None)


class DueQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue: DueQueue[int] = DueQueue()
        self.model = NaiveQueue()

    @rule(key=st.integers(0, 20), due=st.integers(0, 100))
    def upsert(self, key: int, due: int) -> None:
        self.queue.upsert(key, due)
        self.model.upsert(key, due)

    @rule(key=st.integers(0, 20))
    def remove(self, key: int) -> None:
        assert self.queue.remove(key) == self.model.remove(key)

    @rule(now=st.integers(-10, 110), limit=st.one_of(st.none(), st.integers(0, 5)))
    def pop_due(self, now: int, limit: int | None) -> None:
        popped = self.queue.pop_due(now, limit)
        assert all(due <= now for _, due in popped)
        assert popped == self.model.pop_due(now, limit)

    @invariant()
    def agrees(self) -> None:
        assert len(self.queue) == len(self.model.entries)
        assert self.queue.next_due_ms() == self.model.next_due()
        for key in range(0, 21, 5):
            entry = self.model.entries.get(key)
            assert self.queue.due_ms(key) == (None if entry is None else entry[0])
            assert (key in self.queue) == (entry is not None)


DueQueueMachine.TestCase.settings = settings(
    derandomize=True, database=None, deadline=None, max_examples=100, stateful_step_count=60
)
TestDueQueue = DueQueueMachine.TestCase


@pytest.mark.parametrize("seed", range(3))
def test_due_queue_long_random_sequences(seed: int) -> None:
    """Long op sequences, long enough for the heap to compact its stale entries."""
    rng = random.Random(seed)
    queue: DueQueue[str] = DueQueue()
    model = NaiveQueue()
    for _ in range(20_000):
        op = rng.random()
        key = rng.randrange(300)
        if op < 0.7:
            due = rng.randrange(10_000)
            queue.upsert(f"k{key}", due)
            model.upsert(key, due)
        elif op < 0.9:
            assert queue.remove(f"k{key}") == model.remove(key)
        else:
            now, limit = rng.randrange(10_000), rng.choice([None, 1, 10])
            got = queue.pop_due(now, limit)
            assert got == [(f"k{k}", due) for k, due in model.pop_due(now, limit)]
        assert len(queue) == len(model.entries)
    assert queue.next_due_ms() == model.next_due()
    assert len(queue._heap) <= 2 * len(queue) + 1024 + 1  # compaction bounds memory


def test_due_queue_100k_entries() -> None:
    rng = random.Random(7)
    queue: DueQueue[tuple[str, int]] = DueQueue()
    dues = {("reminder", i): rng.randrange(1_000_000) for i in range(100_000)}
    for key, due in dues.items():
        queue.upsert(key, due)
    for i in range(0, 100_000, 2):
        assert queue.remove(("reminder", i))
        del dues[("reminder", i)]
    for i in range(1, 100_000, 4):  # move a quarter of them
        dues[("reminder", i)] = rng.randrange(1_000_000)
        queue.upsert(("reminder", i), dues[("reminder", i)])
    assert len(queue) == len(dues) == 50_000
    assert queue.next_due_ms() == min(dues.values())
    popped: list[tuple[tuple[str, int], int]] = []
    for now in range(0, 1_000_001, 50_000):
        batch = queue.pop_due(now, limit=10_000)
        assert all(due <= now for _, due in batch)
        popped.extend(batch)
    popped.extend(queue.pop_due(1_000_000))
    assert len(queue) == 0 and queue.next_due_ms() is None
    assert dict(popped) == dues
    assert [due for _, due in popped] == sorted(due for _, due in popped)


def test_pop_due_limit_zero_and_negative() -> None:
    queue: DueQueue[str] = DueQueue()
    queue.upsert("a", 1)
    assert queue.pop_due(10, 0) == []
    with pytest.raises(ValueError):
        queue.pop_due(10, -1)
    assert queue.pop_due(0) == []
    assert queue.pop_due(1) == [("a", 1)]
    assert not queue.remove("a")
