from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from placement.dissemination import (
    AckReceived,
    Disseminator,
    Effect,
    Evict,
    HostConnected,
    HostDisconnected,
    LeadershipGained,
    LeadershipLost,
    Operation,
    Refuse,
    RoundCompleted,
    Send,
    TableCommitted,
    Tick,
)

TIMEOUT = 1000


def leader(*hosts: str, version: int = 1, term: int = 1) -> Disseminator:
    d = Disseminator(ack_timeout_ms=TIMEOUT)
    for h in hosts:
        d.handle(HostConnected(h), 0)
    d.handle(LeadershipGained(term), 0)
    d.handle(TableCommitted(version, frozenset(hosts)), 0)
    return d


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def ack_all(d: Disseminator, send: Send, now: int = 1) -> list[Effect]:
    out: list[Effect] = []
    for h in send.hosts:
        out += d.handle(AckReceived(h, send.operation, send.version, send.term), now)
    return out


def run_round(d: Disseminator, first: Send) -> list[Effect]:
    effects = ack_all(d, first)
    (update,) = sends(effects)
    assert update.operation is Operation.UPDATE
    effects = ack_all(d, update)
    (unlock,) = sends(effects)
    assert unlock.operation is Operation.UNLOCK
    return ack_all(d, unlock)


def test_three_acknowledged_steps_in_order() -> None:
    d = Disseminator(ack_timeout_ms=TIMEOUT)
    for h in ("a", "b"):
        d.handle(HostConnected(h), 0)
    d.handle(LeadershipGained(3), 0)
    (lock,) = sends(d.handle(TableCommitted(5, frozenset({"a", "b"})), 0))
    assert (lock.operation, lock.version, lock.term, lock.hosts) == (
        Operation.LOCK,
        5,
        3,
        ("a", "b"),
    )
    # One ack is not enough to move on.
    assert d.handle(AckReceived("a", Operation.LOCK, 5, 3), 1) == []
    done = run_round(d, lock)
    assert next(e for e in done if isinstance(e, RoundCompleted)).version == 5
    assert d.delivered_version == 5 and not d.in_round


def test_changes_during_a_round_fold_into_one_next_round() -> None:
    d = Disseminator(ack_timeout_ms=TIMEOUT)
    for h in ("a", "b"):
        d.handle(HostConnected(h), 0)
    d.handle(LeadershipGained(1), 0)
    (lock,) = sends(d.handle(TableCommitted(1, frozenset({"a", "b"})), 0))
    started = d.rounds_started
    for v in range(2, 202):  # a join storm of 200 hosts
        name = f"h{v}"
        d.handle(HostConnected(name), 1)
        d.handle(TableCommitted(v, frozenset({"a", "b"} | {f"h{i}" for i in range(2, v + 1)})), 1)
    effects = run_round(d, lock)
    (next_lock,) = sends(effects)
    assert next_lock.version == 201 and len(next_lock.hosts) == 202
    run_round(d, next_lock)
    assert d.rounds_started - started == 1
    assert d.delivered_version == 201


def test_silent_host_is_evicted_and_others_unlock() -> None:
    d = leader("a", "b", "c")
    lock = Send(Operation.LOCK, 1, 1, ("a", "b", "c"))
    d.handle(AckReceived("a", Operation.LOCK, 1, 1), 5)
    d.handle(AckReceived("b", Operation.LOCK, 1, 1), 5)
    assert d.handle(Tick(), TIMEOUT - 1) == []
    effects = d.handle(Tick(), TIMEOUT)
    assert Evict(("c",)) in effects
    (update,) = sends(effects)
    assert update.hosts == ("a", "b")
    assert lock.hosts != update.hosts
    unlock_effects = ack_all(d, update, TIMEOUT + 1)
    (unlock,) = sends(unlock_effects)
    assert any(isinstance(e, RoundCompleted) for e in ack_all(d, unlock, TIMEOUT + 2))


def test_stale_or_foreign_acks_are_refused() -> None:
    d = leader("a", "b")
    assert isinstance(d.handle(AckReceived("a", Operation.LOCK, 0, 1), 1)[0], Refuse)
    assert isinstance(d.handle(AckReceived("a", Operation.UPDATE, 1, 1), 1)[0], Refuse)
    assert isinstance(d.handle(AckReceived("a", Operation.LOCK, 1, 0), 1)[0], Refuse)
    assert isinstance(d.handle(AckReceived("zz", Operation.LOCK, 1, 1), 1)[0], Refuse)
    assert d.current_operation is Operation.LOCK


def test_round_waits_for_table_hosts_to_connect() -> None:
    d = Disseminator(ack_timeout_ms=TIMEOUT)
    d.handle(LeadershipGained(2), 0)
    d.handle(HostConnected("a"), 0)
    assert sends(d.handle(TableCommitted(4, frozenset({"a", "b"})), 0)) == []
    (lock,) = sends(d.handle(HostConnected("b"), 10))
    assert lock.hosts == ("a", "b") and lock.version == 4


def test_reconnect_without_change_gets_a_catch_up_round() -> None:
    d = leader("a", "b")
    run_round(d, Send(Operation.LOCK, 1, 1, ("a", "b")))
    d.handle(HostDisconnected("b"), 2)
    (lock,) = sends(d.handle(HostConnected("b"), 3))
    assert lock.hosts == ("b",) and lock.version == 1
    done = run_round(d, lock)
    assert next(e for e in done if isinstance(e, RoundCompleted)).catch_up


def test_followers_send_nothing() -> None:
    d = leader("a")
    d.handle(LeadershipLost(), 1)
    assert d.handle(TableCommitted(9, frozenset({"a"})), 2) == []


class Simulation:
    """Random joins, leaves, acks, silences and timeouts against one leader, checking
    every effect as it comes out."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.d = Disseminator(ack_timeout_ms=TIMEOUT)
        self.now = 0
        self.version = 0
        self.members: set[str] = set()
        self.outstanding: dict[str, tuple[Operation, int, int]] = {}
        self.acked: dict[tuple[int, Operation], set[str]] = {}
        self.last_version = 0
        self.check(self.d.handle(LeadershipGained(1), 0))

    def check(self, effects: list[Effect]) -> None:
        for e in effects:
            if not isinstance(e, Send):
                continue
            assert set(e.hosts) <= self.d.connected
            assert e.version >= self.last_version
            if e.operation is not Operation.LOCK:
                previous = Operation(e.operation - 1)
                assert set(e.hosts) <= self.acked.get((e.version, previous), set())
            self.last_version = e.version
            for h in e.hosts:
                self.outstanding[h] = (e.operation, e.version, e.term)

    def commit(self) -> None:
        self.version += 1
        self.check(self.d.handle(TableCommitted(self.version, frozenset(self.members)), self.now))

    def leave(self, host: str) -> None:
        self.members.discard(host)
        self.outstanding.pop(host, None)
        self.check(self.d.handle(HostDisconnected(host), self.now))

    def step(self) -> None:
        self.now += self.rng.randint(0, 400)
        roll = self.rng.random()
        if roll < 0.2:
            host = f"h{self.rng.randint(0, 9)}"
            self.check(self.d.handle(HostConnected(host), self.now))
            self.members.add(host)
            self.commit()
        elif roll < 0.3 and self.members:
            self.leave(self.rng.choice(sorted(self.members)))
            self.commit()
        elif roll < 0.9 and self.outstanding:
            host = self.rng.choice(sorted(self.outstanding))
            op, v, t = self.outstanding.pop(host)
            if self.rng.random() < 0.9:  # some hosts stay silent
                self.acked.setdefault((v, op), set()).add(host)
                self.check(self.d.handle(AckReceived(host, op, v, t), self.now))
        else:
            effects = self.d.handle(Tick(), self.now)
            self.check(effects)
            for e in effects:
                if isinstance(e, Evict):
                    for host in e.hosts:
                        self.leave(host)
                    self.commit()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=20, max_value=200))
def test_update_and_unlock_only_after_every_participant_acked(seed: int, steps: int) -> None:
    """For every round, a host is sent UPDATE only after every remaining participant
    acknowledged LOCK, and UNLOCK only after every remaining participant acknowledged
    UPDATE; every send targets connected hosts; versions sent never decrease."""
    sim = Simulation(seed)
    for _ in range(steps):
        sim.step()
