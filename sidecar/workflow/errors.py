"""The workflow engine's errors: one hierarchy, mapped to gRPC/HTTP codes by the shell."""

from __future__ import annotations

__all__ = [
    "CheckpointTooLargeError",
    "CorruptStateError",
    "InvalidResponseError",
    "RerunError",
    "StaleTurnError",
    "WorkflowError",
]


class WorkflowError(Exception):
    """Base of every workflow engine error."""


class InvalidResponseError(WorkflowError):
    """The app's WorkflowResponse cannot be applied (wrong instance, unknown action)."""


class StaleTurnError(InvalidResponseError):
    """The answer is for a turn planned from a state that has moved on since (another
    activation's save was loaded meanwhile): plan the turn again."""


class RerunError(WorkflowError):
    """RerunWorkflowFromEvent asked for something impossible (not terminal, no such
    TaskScheduled event)."""


class CorruptStateError(WorkflowError):
    """Stored rows do not form a state (missing history key, unreadable metadata)."""


class CheckpointTooLargeError(WorkflowError):
    """One write that cannot be split (a single event, or the rows that must commit with
    the metadata) exceeds the store's per-transaction limits."""
