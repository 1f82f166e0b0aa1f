"""The replicated membership of the placement service: a pure state machine.

Raft replicates commands; every node applies them in log order with `apply`, which reads
no clock and makes no ids: the leader stamps `now_ms` into each command before proposing
it. The table version is part of the replicated state and rises by one with every change
that alters the table, including the `leader` command a new leader proposes once elected,
so versions keep increasing across leader changes and every new leader starts with a
fresh round that all hosts accept.

Commands are plain mappings (encoded with msgpack by the shell):

- `{"op": "upsert", "now_ms": int, "hosts": [host, ...]}`: join or change hosts;
- `{"op": "remove", "now_ms": int, "names": [str, ...], "reason": str}`: leave, expiry,
  dropped stream or no acknowledgement;
- `{"op": "leader", "now_ms": int, "term": int}`: a new leader took over in `term`.

A host is `{"name", "address", "app_id", "namespace", "actor_types", "api_level",
"incarnation"}` (`incarnation` may be missing: entries written before it existed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from placement.errors import InvalidCommandError

# Bounds on what a host may report; the shell validates reports against them first.
MAX_NAME_LENGTH = 256
MAX_ACTOR_TYPES = 1024


class RemoveReason(StrEnum):
    LEFT = "left"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    UNACKED = "unacked"


@dataclass(frozen=True, slots=True)
class HostRecord:
    name: str
    address: str
    app_id: str
    namespace: str
    actor_types: tuple[str, ...]
    api_level: int
    # The sidecar process's own id, new at each start (see `same_table_entry`).
    incarnation: str = ""
    joined_ms: int = 0

    def same_table_entry(self, other: HostRecord) -> bool:
        """Whether replacing self by other leaves the placement table unchanged. A new
        incarnation changes it even when nothing else does: the host was restarted and
        lost the actors it held, so the round that records it tells every sidecar to
        re-issue what those actors were doing (the ring itself stays the same)."""
        return (
            self.address == other.address
            and self.app_id == other.app_id
            and self.namespace == other.namespace
            and self.actor_types == other.actor_types
            and self.api_level == other.api_level
            and self.incarnation == other.incarnation
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "app_id": self.app_id,
            "namespace": self.namespace,
            "actor_types": list(self.actor_types),
            "api_level": self.api_level,
            "joined_ms": self.joined_ms,
        }
        if self.incarnation:  # absent from hosts that do not report one, as before it
            wire["incarnation"] = self.incarnation
        return wire

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any], joined_ms: int | None = None) -> HostRecord:
        try:
            types = raw["actor_types"]
            if isinstance(types, str | bytes):
                raise InvalidCommandError("actor_types must be a list of strings")
            record = cls(
                name=str(raw["name"]),
                address=str(raw["address"]),
                app_id=str(raw["app_id"]),
                namespace=str(raw["namespace"]),
                actor_types=tuple(sorted({str(t) for t in types})),
                api_level=int(raw["api_level"]),
                incarnation=str(raw.get("incarnation", "")),
                joined_ms=int(raw.get("joined_ms", 0) if joined_ms is None else joined_ms),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidCommandError(f"malformed host entry: {exc!r}") from exc
        return record


@dataclass(frozen=True, slots=True)
class Membership:
    """The replicated state. Treat as immutable: `apply` returns a new value."""

    hosts: Mapping[str, HostRecord] = field(default_factory=dict)
    version: int = 0
    leader_term: int = 0
    updated_ms: int = 0

    def sorted_hosts(self) -> tuple[HostRecord, ...]:
        return tuple(self.hosts[name] for name in sorted(self.hosts))

    def to_wire(self) -> dict[str, Any]:
        return {
            "hosts": [h.to_wire() for h in self.sorted_hosts()],
            "version": self.version,
            "leader_term": self.leader_term,
            "updated_ms": self.updated_ms,
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Membership:
        hosts = {h.name: h for h in (HostRecord.from_wire(x) for x in raw.get("hosts", ()))}
        return cls(
            hosts=hosts,
            version=int(raw.get("version", 0)),
            leader_term=int(raw.get("leader_term", 0)),
            updated_ms=int(raw.get("updated_ms", 0)),
        )


def _now(command: Mapping[str, Any]) -> int:
    now = command.get("now_ms")
    if not isinstance(now, int) or now < 0:
        raise InvalidCommandError("command lacks a non-negative integer now_ms")
    return now


def _upsert(state: Membership, hosts: Iterable[Mapping[str, Any]], now: int) -> Membership:
    merged = dict(state.hosts)
    changed = False
    for raw in hosts:
        incoming = HostRecord.from_wire(raw, joined_ms=now)
        current = merged.get(incoming.name)
        if current is not None and current.same_table_entry(incoming):
            continue
        if current is not None:
            incoming = replace(incoming, joined_ms=current.joined_ms)
        merged[incoming.name] = incoming
        changed = True
    if not changed:
        return state
    return Membership(merged, state.version + 1, state.leader_term, now)


def _remove(state: Membership, names: Iterable[str], now: int) -> Membership:
    gone = {str(n) for n in names} & state.hosts.keys()
    if not gone:
        return state
    kept = {name: h for name, h in state.hosts.items() if name not in gone}
    return Membership(kept, state.version + 1, state.leader_term, now)


def apply(state: Membership, command: Mapping[str, Any]) -> Membership:
    """The next state after `command`. INVARIANT: a pure function of (state, command)."""
    now = _now(command)
    match command.get("op"):
        case "upsert":
            return _upsert(state, command.get("hosts", ()), now)
        case "remove":
            RemoveReason(command.get("reason", "left"))
            return _remove(state, command.get("names", ()), now)
        case "leader":
            term = command.get("term")
            if not isinstance(term, int) or term < state.leader_term:
                raise InvalidCommandError(f"leader command with bad term {term!r}")
            return Membership(state.hosts, state.version + 1, term, now)
        case other:
            raise InvalidCommandError(f"unknown membership command {other!r}")


def upsert_command(hosts: Iterable[HostRecord], now_ms: int) -> dict[str, Any]:
    return {"op": "upsert", "now_ms": now_ms, "hosts": [h.to_wire() for h in hosts]}


def remove_command(names: Iterable[str], reason: RemoveReason, now_ms: int) -> dict[str, Any]:
    return {"op": "remove", "now_ms": now_ms, "names": sorted(names), "reason": reason.value}


def leader_command(term: int, now_ms: int) -> dict[str, Any]:
    return {"op": "leader", "now_ms": now_ms, "term": term}
