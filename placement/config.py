"""Configuration of one placement node, validated up front.

A node has a Raft address (pysyncobj's port, peers only) and an API address (the gRPC
host stream, sidecars). Peers are given as `RAFT=API` pairs so that a follower can send
sidecars to the leader's API address when pysyncobj names the leader by its Raft address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftkit.config import RaftConfig, parse_address
from raftkit.errors import ConfigError
from raftkit.peers import api_address_for, check_peers

DEFAULT_VIRTUAL_NODES = 100


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    node_id: str
    api_address: str
    raft_address: str
    peers: dict[str, str]  # raft address -> API address, other nodes only
    data_dir: Path
    raft_password: str | None = None
    allow_insecure_raft: bool = False
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
    raft_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ConfigError("node_id must not be empty")
        parse_address(self.api_address, "api_address")
        parse_address(self.raft_address, "raft_address")
        check_peers(self.raft_address, self.peers)
        for name in ("host_timeout_s", "drop_grace_s", "ack_timeout_s", "tick_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.drop_grace_s >= self.host_timeout_s:
            raise ConfigError("drop_grace_s must be shorter than host_timeout_s")
        if not 1 <= self.virtual_nodes <= 10_000:
            raise ConfigError("virtual_nodes must be within 1..10000")

    def raft_config(self) -> RaftConfig:
        values: dict[str, Any] = {
            "self_address": self.raft_address,
            "partners": sorted(self.peers),
            "data_dir": str(self.data_dir / "raft"),
            "password": self.raft_password,
            "allow_insecure": self.allow_insecure_raft,
            **self.raft_overrides,
        }
        return RaftConfig.from_mapping(values)

    def api_address_of(self, raft_address: str | None) -> str | None:
        return api_address_for(raft_address, self.raft_address, self.api_address, self.peers)
