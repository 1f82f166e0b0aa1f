"""Errors of the raftkit package. Each service maps them to its own gRPC/HTTP codes at its
edge; raftkit itself maps nothing."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every raftkit error."""


class ConfigError(RaftError, ValueError):
    """A bad or contradictory `RaftConfig` value, or an unknown key."""


class CodecError(RaftError, ValueError):
    """Bytes that are not a valid raftkit command, snapshot or dump."""


class JournalError(RaftError):
    """The journal cannot be read or made durable. After a failed sync the journal
    refuses all further work (an fsync error cannot be retried safely)."""


class NotLeaderError(RaftError):
    """This node cannot take the command: it is not the leader, or no leader is known.
    The command was not applied; retrying on `leader_hint` is safe."""

    def __init__(self, leader_hint: str | None, message: str | None = None) -> None:
        super().__init__(message or f"not the leader (leader: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class LeadershipLostError(NotLeaderError):
    """A term fence failed: this node is no longer the leader of `term` with a quorum, or
    a fenced command was appended in another term (every replica rejected it alike)."""

    def __init__(self, term: int, current_term: int, leader_hint: str | None) -> None:
        super().__init__(
            leader_hint,
            f"not the leader of term {term} with a quorum any more "
            f"(current term {current_term}, leader: {leader_hint or 'unknown'})",
        )
        self.term = term
        self.current_term = current_term


class RaftTimeoutError(RaftError, TimeoutError):
    """No outcome within the timeout. The command may still commit later: outcome unknown."""


class UnknownOutcomeError(RaftError):
    """The leader changed while a forwarded command was in flight: it may or may not have
    been applied. Make commands idempotent (ids stamped by the proposer) and retry."""


class QueueFullError(RaftError):
    """pysyncobj's command queue is full: back off and retry."""


class CommandRejectedError(RaftError):
    """The command reached the log but every replica refused it alike (undecodable, or the
    state machine raised); `reason` says why. Retrying the same command will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"command rejected by the state machine: {reason}")
        self.reason = reason


class CommandTooLargeError(RaftError, ValueError):
    """The encoded command is larger than one Raft entry may be; nothing was proposed.
    Split it (batches are cut by encoded size)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"command of {size} bytes exceeds the {limit}-byte entry limit")
        self.size = size
        self.limit = limit
