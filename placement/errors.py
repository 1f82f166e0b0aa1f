"""Errors of the placement package. The gRPC edge (placement/edge.py, and the control
loop's stream closes in placement/server.py) maps them to status codes; nothing else does."""

from __future__ import annotations


class PlacementError(Exception):
    """Base of every placement error."""


class NoHostsError(PlacementError):
    """No host in the table supports the requested (namespace, actor type)."""

    def __init__(self, namespace: str, actor_type: str) -> None:
        super().__init__(f"no host supports actor type {actor_type!r} in namespace {namespace!r}")
        self.namespace = namespace
        self.actor_type = actor_type


class InvalidHostError(PlacementError):
    """A host report that must be refused; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DuplicateHostError(PlacementError):
    """Another live stream already reports this host name."""


class StaleAckError(PlacementError):
    """An acknowledgement for a round, version or term that is not the current one."""


class InvalidCommandError(PlacementError):
    """A replicated command that cannot be applied; every node refuses it alike."""


class NotLeaderError(PlacementError):
    def __init__(self, leader_hint: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class LookupTimeoutError(PlacementError):
    """The table stayed locked (or absent) longer than the lookup's bounded wait."""
