"""What every Raft-replicated service node has: an id, an API address, a Raft address,
its peers as RAFT=API pairs, a data directory and the Raft secret. placement and
reminders extend `RaftServiceConfig` with their own settings.

Also the gRPC keepalive settings of the services' APIs and of their clients (the
sidecars). Over a real network a node that disappears (a partition, a power cut) sends
no reset: without pings, a stream to it looks open until TCP gives up, many minutes
later, and a sidecar would keep talking to a deposed leader. Clients ping every 2 s and
drop a connection after 2 s without an answer; the servers accept pings that often.
(Found by the multi-host test, tests/deploy/test_multihost.py: on loopback a dead
process answers with a reset at once, so nothing else showed it.)"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftkit.config import RaftConfig, parse_address
from raftkit.errors import ConfigError
from raftkit.peers import api_address_for, check_peers

if TYPE_CHECKING:
    from raftkit.tls import TlsFiles

__all__ = [
    "KEEPALIVE_CLIENT_OPTIONS",
    "KEEPALIVE_SERVER_OPTIONS",
    "RaftServiceConfig",
    "freeze_startup_objects",
]

KEEPALIVE_CLIENT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
KEEPALIVE_SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
]


def freeze_startup_objects() -> None:
    """Take what is alive once a process is up (its imports, its own long-lived
    structures) out of the cyclic collector's reach: it lives as long as the process, and
    every full collection walked it again. Call once, when the process is serving.
    In a reminders node under `bench reminders` the longest full passes went from 31-105
    ms to 1-22 ms (bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class RaftServiceConfig:
    node_id: str
    api_address: str
    raft_address: str
    peers: dict[str, str]  # raft address -> API address, other nodes only
    data_dir: Path
    raft_password: str | None = None
    allow_insecure_raft: bool = False
    # Extra RaftConfig values (e.g. bind_address), checked by RaftConfig.from_mapping.
    raft_overrides: dict[str, Any] = field(default_factory=dict)
    # Mutual TLS on the API port (raftkit.tls); None: plaintext.
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ConfigError("node_id must not be empty")
        parse_address(self.api_address, "api_address")
        parse_address(self.raft_address, "raft_address")
        check_peers(self.raft_address, self.peers)

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
