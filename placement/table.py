"""A host's view of the placement table: a pure state machine fed dissemination orders.

The sidecar's placement client owns one `TableView`. Orders are applied in stream order;
the view refuses any order from a term older than the newest it has seen, and any table
older than the one it holds, so a deposed leader cannot roll a host back. UPDATE replaces
the table at once, but lookups stay blocked until UNLOCK, so callers never act on a table
that other hosts have not all taken yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from placement.dissemination import Operation
from placement.ring import DEFAULT_VNODES, RingSet


@dataclass(frozen=True, slots=True)
class TableHost:
    name: str
    address: str
    app_id: str
    namespace: str
    actor_types: tuple[str, ...]
    api_level: int
    incarnation: str = ""  # new at each start of the sidecar process


@dataclass(frozen=True, slots=True)
class Table:
    version: int
    term: int
    hosts: tuple[TableHost, ...]
    rings: RingSet

    @classmethod
    def build(
        cls, version: int, term: int, hosts: Sequence[TableHost], vnodes: int = DEFAULT_VNODES
    ) -> Table:
        ordered = tuple(sorted(hosts, key=lambda h: h.name))
        return cls(version, term, ordered, RingSet(ordered, vnodes=vnodes))

    def address_of(self, name: str) -> str | None:
        for h in self.hosts:
            if h.name == name:
                return h.address
        return None


@dataclass(frozen=True, slots=True)
class Accepted:
    operation: Operation
    version: int
    term: int


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    stale: bool = False  # from an older term, or an older table version


Outcome = Accepted | Ignored


@dataclass(slots=True)
class TableView:
    table: Table | None = None
    locked: bool = True  # nothing to look up before the first round completes
    max_term: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)  # (version, term) applied

    @property
    def version(self) -> int:
        return self.table.version if self.table else 0

    def apply(
        self, operation: Operation, version: int, term: int, table: Table | None = None
    ) -> Outcome:
        if term < self.max_term:
            return Ignored(f"term {term} is older than term {self.max_term} already seen", True)
        if version < self.version:
            return Ignored(f"version {version} is older than held version {self.version}", True)
        self.max_term = term
        match operation:
            case Operation.LOCK:
                self.locked = True
            case Operation.UPDATE:
                if table is None or table.version != version:
                    return Ignored(f"UPDATE v{version} without a matching table")
                self.table = table
                self.history.append((version, term))
            case Operation.UNLOCK:
                if self.table is None or self.table.version != version:
                    return Ignored(f"UNLOCK v{version} but the held table is v{self.version}")
                self.locked = False
            case _:
                return Ignored(f"unknown operation {operation!r}")
        return Accepted(operation, version, term)

    def forget(self) -> None:
        """Drop the table and the newest term seen, and lock: placement went back in
        time (see `raftkit.regression`); its next orders are taken as if first heard."""
        self.table = None
        self.locked = True
        self.max_term = 0

    def lock_out(self) -> None:
        """Cut off from placement: stop serving lookups until a leader brings us back."""
        self.locked = True
