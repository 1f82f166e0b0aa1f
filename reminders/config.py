"""Configuration of one reminders node, validated up front (`raftkit.ConfigError`).

Like a placement node, a reminders node has a Raft address (pysyncobj, peers only) and an
API address (gRPC: the API and the trigger streams). Peers are `RAFT=API` pairs so that
a follower can point clients at the leader's API address when pysyncobj names the
leader by its Raft address.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkit.errors import ConfigError
from raftkit.peers import parse_peer
from raftkit.service import RaftServiceConfig

__all__ = ["RemindersConfig", "parse_peer"]


@dataclass(frozen=True, slots=True)
class RemindersConfig(RaftServiceConfig):
    # Triggers per TriggerBatch message.
    batch_size: int = 1000
    # Firings sent and not yet acknowledged, per subscriber (flow control).
    max_in_flight: int = 20_000
    # An unacknowledged firing is retried after this long.
    ack_timeout_s: float = 5.0
    # While firings are in flight, reminders that fall due wait up to this long (ms) so
    # that they leave together: fewer, bigger batches, acks and progress commands. Under
    # a steady 20,000/s this is what keeps the leader ahead (bench/RESULTS.md); a node
    # with nothing in flight fires at once. 0 fires every due reminder at once.
    fire_linger_ms: int = 10
    # Retry backoff after a failed or timed out firing: min * 2**(attempt-1), capped.
    retry_min_s: float = 0.1
    retry_max_s: float = 10.0
    # Acknowledged firings recorded per Raft command, at most.
    progress_batch: int = 5000
    # Creates per Raft command, at most (group commit).
    create_batch: int = 5000
    proposal_timeout_s: float = 5.0
    # Kept well below the Raft command size limit (see reminders.sizing).
    max_data_bytes: int = 32 * 1024
    max_key_part_length: int = 256

    def __post_init__(self) -> None:
        RaftServiceConfig.__post_init__(self)
        for name in ("ack_timeout_s", "retry_min_s", "retry_max_s", "proposal_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.retry_max_s < self.retry_min_s:
            raise ConfigError("retry_max_s must be at least retry_min_s")
        for name in ("batch_size", "max_in_flight", "progress_batch", "create_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not 0 <= self.fire_linger_ms <= 1000:
            raise ConfigError("fire_linger_ms must be between 0 and 1000")
        if self.raft_password is None and not self.allow_insecure_raft:
            raise ConfigError(
                "no Raft password: set --raft-password or ACTORFLOW_RAFT_PASSWORD "
                "(or allow an insecure Raft port for throwaway tests)"
            )
