"""The reminders service's error hierarchy.

Edge modules (gRPC, HTTP) map these to status codes; nothing else does.
"""

from __future__ import annotations

__all__ = ["InvalidReminderError", "NotLeaderError", "RemindersError"]


class RemindersError(Exception):
    """Base of every error the reminders service raises on purpose."""


class InvalidReminderError(RemindersError):
    """A reminder request carries a value that cannot be accepted.

    `field` names the offending request field in snake case ("due_time", "period",
    "ttl", "data", "key.name", ...); `message` is meant for the caller as is and names
    both the field and the value.
    """

    def __init__(self, field: str, message: str) -> None:
        # Both go to Exception.args so the error pickles and copies faithfully.
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotLeaderError(RemindersError):
    """This replica is not the Raft leader; `leader_hint` is the leader's address if known."""

    def __init__(self, leader_hint: str | None) -> None:
        super().__init__(leader_hint)
        self.leader_hint = leader_hint

    def __str__(self) -> str:
        if self.leader_hint is None:
            return "not the leader (leader unknown)"
        return f"not the leader (leader hint: {self.leader_hint})"
