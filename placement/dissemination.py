"""Dissemination rounds of the placement leader: a pure state machine.

A round moves every host of the table to a new version in three acknowledged steps:
LOCK (stop lookups and activations), UPDATE (take the new table; deactivate actors it
moves elsewhere, draining their turns), UNLOCK (serve with the new table). No host is
sent UPDATE before every host acknowledged LOCK, and none is sent UNLOCK before every
host acknowledged UPDATE, so no actor is active on two hosts at once.

- Changes committed while a round runs are folded into the next round: a join storm of
  200 hosts makes a handful of rounds, not 200.
- A host that does not acknowledge a step within `ack_timeout_ms` is dropped from the
  round (the others go on) and evicted from membership instead of freezing everyone.
- A round starts only when every host of the table is connected to this leader: a host
  in the table that is not connected may still serve actors with an older table, so
  moving its actors elsewhere must wait until it reconnects or is evicted (the shell
  evicts hosts that stay away past the host timeout; sidecars lock themselves when cut
  off from placement for less than that, see placement/client.py).
- A host that reconnects while the table does not change is brought up to date by a
  round of its own (a catch-up round), which moves no actor.

The machine reads no clock: every call passes `now_ms`. It returns effects; the shell
(placement/server.py) carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum


class Operation(IntEnum):
    # Same numbers as actorflow.placement.v1.Operation.
    LOCK = 1
    UPDATE = 2
    UNLOCK = 3


# ---- events


@dataclass(frozen=True, slots=True)
class TableCommitted:
    version: int
    hosts: frozenset[str]


@dataclass(frozen=True, slots=True)
class HostConnected:
    host: str


@dataclass(frozen=True, slots=True)
class HostDisconnected:
    host: str


@dataclass(frozen=True, slots=True)
class AckReceived:
    host: str
    operation: Operation
    version: int
    term: int


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class LeadershipGained:
    term: int


@dataclass(frozen=True, slots=True)
class LeadershipLost:
    pass


Event = (
    TableCommitted
    | HostConnected
    | HostDisconnected
    | AckReceived
    | Tick
    | LeadershipGained
    | LeadershipLost
)

# ---- effects


@dataclass(frozen=True, slots=True)
class Send:
    operation: Operation
    version: int
    term: int
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Evict:
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refuse:
    host: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoundCompleted:
    version: int
    term: int
    hosts: int
    started_ms: int
    finished_ms: int
    catch_up: bool


Effect = Send | Evict | Refuse | RoundCompleted


@dataclass(slots=True)
class _Round:
    version: int
    term: int
    participants: set[str]
    operation: Operation
    pending: set[str]
    started_ms: int
    deadline_ms: int
    catch_up: bool


@dataclass(slots=True)
class Disseminator:
    """Owned by the placement leader's control loop; fed events, returns effects."""

    ack_timeout_ms: int
    term: int = 0
    leading: bool = False
    table_version: int = 0
    table_hosts: frozenset[str] = frozenset()
    delivered_version: int = 0
    connected: set[str] = field(default_factory=set)
    needs_sync: set[str] = field(default_factory=set)
    rounds_started: int = 0
    _round: _Round | None = None

    @property
    def in_round(self) -> bool:
        return self._round is not None

    @property
    def current_operation(self) -> Operation | None:
        return self._round.operation if self._round else None

    def handle(self, event: Event, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        match event:
            case TableCommitted(version, hosts):
                if version > self.table_version:
                    self.table_version, self.table_hosts = version, hosts
            case HostConnected(host):
                self.connected.add(host)
                self.needs_sync.add(host)
            case HostDisconnected(host):
                self.connected.discard(host)
                self.needs_sync.discard(host)
                effects += self._drop_from_round([host], now_ms)
            case AckReceived():
                effects += self._ack(event, now_ms)
            case Tick():
                effects += self._expire(now_ms)
            case LeadershipGained(term):
                self.leading, self.term = True, term
                self._round = None
                # Hosts connected to this leader have not heard from it yet.
                self.needs_sync |= self.connected
            case LeadershipLost():
                self.leading, self._round = False, None
            case _:
                raise TypeError(f"unknown dissemination event {event!r}")
        effects += self._maybe_start(now_ms)
        return effects

    # ---- internals

    def _ack(self, ack: AckReceived, now_ms: int) -> list[Effect]:
        rnd = self._round
        if rnd is None or ack.host not in rnd.participants:
            return [Refuse(ack.host, f"no round in progress for {ack.host}")]
        if (ack.operation, ack.version, ack.term) != (rnd.operation, rnd.version, rnd.term):
            return [
                Refuse(
                    ack.host,
                    f"acknowledged {ack.operation.name} v{ack.version} term {ack.term}; "
                    f"current step is {rnd.operation.name} v{rnd.version} term {rnd.term}",
                )
            ]
        rnd.pending.discard(ack.host)
        return self._advance(now_ms)

    def _drop_from_round(self, hosts: Iterable[str], now_ms: int) -> list[Effect]:
        rnd = self._round
        if rnd is None:
            return []
        for host in hosts:
            rnd.participants.discard(host)
            rnd.pending.discard(host)
        return self._advance(now_ms)

    def _expire(self, now_ms: int) -> list[Effect]:
        rnd = self._round
        if rnd is None or not rnd.pending or now_ms < rnd.deadline_ms:
            return []
        late = tuple(sorted(rnd.pending))
        return [Evict(late), *self._drop_from_round(late, now_ms)]

    def _advance(self, now_ms: int) -> list[Effect]:
        rnd = self._round
        if rnd is None or rnd.pending:
            return []
        if rnd.operation is Operation.UNLOCK or not rnd.participants:
            self._round = None
            if not rnd.catch_up:
                self.delivered_version = max(self.delivered_version, rnd.version)
            return [
                RoundCompleted(
                    rnd.version,
                    rnd.term,
                    len(rnd.participants),
                    rnd.started_ms,
                    now_ms,
                    rnd.catch_up,
                )
            ]
        rnd.operation = Operation(rnd.operation + 1)
        rnd.pending = set(rnd.participants)
        rnd.deadline_ms = now_ms + self.ack_timeout_ms
        return [Send(rnd.operation, rnd.version, rnd.term, tuple(sorted(rnd.participants)))]

    def _maybe_start(self, now_ms: int) -> list[Effect]:
        if not self.leading or self._round is not None:
            return []
        if not self.table_hosts <= self.connected:
            return []  # wait for the missing hosts to reconnect or be evicted
        if self.table_version > self.delivered_version:
            participants = set(self.table_hosts)
            catch_up = False
        else:
            participants = self.needs_sync & self.table_hosts
            catch_up = True
        self.needs_sync -= participants
        if not participants:
            if not catch_up:
                self.delivered_version = self.table_version
            return []
        self.rounds_started += 1
        self._round = _Round(
            version=self.table_version,
            term=self.term,
            participants=participants,
            operation=Operation.LOCK,
            pending=set(participants),
            started_ms=now_ms,
            deadline_ms=now_ms + self.ack_timeout_ms,
            catch_up=catch_up,
        )
        return [Send(Operation.LOCK, self.table_version, self.term, tuple(sorted(participants)))]
