"""Configuration of one placement node, validated up front.

A node has a Raft address (pysyncobj's port, peers only) and an API address (the gRPC
host stream, sidecars). Peers are given as `RAFT=API` pairs so that a follower can send
sidecars to the leader's API address when pysyncobj names the leader by its Raft address.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftkit.errors import ConfigError
from raftkit.service import RaftServiceConfig

DEFAULT_VIRTUAL_NODES = 100


@dataclass(frozen=True, slots=True)
class PlacementConfig(RaftServiceConfig):
    # A host whose heartbeats stop for this long is removed.
    host_timeout_s: float = 5.0
    # A host whose stream drops is removed after this grace. It must exceed the clients'
    # `disconnect_lock_after_s`, so that a host cut off by the network has locked itself
    # before its actors move elsewhere.
    drop_grace_s: float = 1.5
    # A host that does not acknowledge a round step within this time is dropped.
    ack_timeout_s: float = 3.0
    tick_s: float = 0.05
    virtual_nodes: int = DEFAULT_VIRTUAL_NODES
    max_actor_types: int = 1024
    max_name_length: int = 256

    def __post_init__(self) -> None:
        RaftServiceConfig.__post_init__(self)
        for name in ("host_timeout_s", "drop_grace_s", "ack_timeout_s", "tick_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.drop_grace_s >= self.host_timeout_s:
            raise ConfigError("drop_grace_s must be shorter than host_timeout_s")
        if not 1 <= self.virtual_nodes <= 10_000:
            raise ConfigError("virtual_nodes must be within 1..10000")
