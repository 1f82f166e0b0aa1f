"""The Raft state machine of a placement node: membership, applied from the log.

Runs on pysyncobj's tick thread. It only applies commands to the pure `membership`
module and hands each new state to `on_change` (the shell forwards it to its event loop
with `call_soon_threadsafe`).
"""

from __future__ import annotations

from collections.abc import Callable

from placement import membership
from placement.membership import Membership
from raftkit.codec import Command, decode_snapshot, encode_snapshot
from raftkit.node import Entry

ChangeHook = Callable[[Membership], None]


class MembershipMachine:
    def __init__(self, on_change: ChangeHook | None = None) -> None:
        self.state = Membership()
        self._on_change = on_change

    def apply(self, command: Command, entry: Entry) -> object:
        if not isinstance(command.body, dict):
            raise TypeError(f"membership command body must be a map, got {command.body!r}")
        new = membership.apply(self.state, {**command.body, "op": command.kind})
        if new is not self.state:
            self.state = new
            if self._on_change is not None:
                self._on_change(new)
        return new.version

    def snapshot(self) -> bytes:
        return encode_snapshot(self.state.to_wire())

    def restore(self, data: bytes) -> None:
        self.state = Membership.from_wire(decode_snapshot(data) or {})
        if self._on_change is not None:
            self._on_change(self.state)


def command_for(raw: dict[str, object]) -> Command:
    """Wrap a `membership.*_command` mapping as a raftkit command."""
    body = {k: v for k, v in raw.items() if k != "op"}
    return Command(str(raw["op"]), body)
