"""The contract between `RaftNode` and a service's state machine: `StateMachine` and `Entry`.

Kept apart from `raftkit.node` so that a service's pure state machine depends on this
small contract only, not on the pysyncobj shell that drives it. `raftkit.node`
re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from raftkit.codec import Command

__all__ = ["Entry", "StateMachine"]


@dataclass(frozen=True, slots=True)
class Entry:
    """Where a command sits in the log: the same on every replica."""

    index: int
    term: int


class StateMachine(Protocol):
    def apply(self, command: Command, entry: Entry) -> object:
        """Apply one committed command. Pure and deterministic; runs on the tick thread.
        Raising makes every replica reject the command alike (so do it before mutating)."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes (see `raftkit.codec.encode_snapshot`)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a `snapshot()` result."""
        ...
