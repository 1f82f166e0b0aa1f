"""What `actorflow up` is asked to run, and the fixed names and numbers it rests on.

Kept apart from `cluster`, which starts the processes, so that `scale` can find the
control socket without importing the process and HTTP machinery (it runs and exits at
once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CONTROL_SOCKET = "control.sock"
LOCK_FILE = "up.lock"  # held by the running `up` (see `Cluster._lock_dir`)
ETCD_MAX_TXN_OPS = 10_000
# The etcd members `up` starts: their space quota, and how much history they keep. etcd
# keeps every revision of every key until compacted; a checkpoint per turn makes many,
# and a database that reaches its quota refuses every write (the NOSPACE alarm) until an
# operator compacts, defragments and disarms it.
ETCD_QUOTA_BYTES = 8 * 1024**3
ETCD_COMPACTION_RETENTION = "5m"
TLS_ENV_PREFIX = "ACTORFLOW_TLS_"
PEER_PORT_OFFSET = 1000  # with --tls: a sidecar's peer port, from its app port


@dataclass
class SidecarSpec:
    index: int
    app_id: str
    grpc: str
    http: str
    peer: str | None = None  # the peer API's own port (with --tls)

    @property
    def name(self) -> str:
        return f"sidecar-{self.index}"


@dataclass
class UpOptions:
    data_dir: Path
    sidecars: int = 2
    app_ids: list[str] = field(default_factory=list)
    store: str = "sqlite"
    etcd_endpoints: list[str] = field(default_factory=list)
    base_grpc_port: int = 50001
    base_http_port: int = 3500
    test_actors: bool = False
    ready_timeout_s: float = 60.0
    # Mutual TLS between nodes (raftkit.tls), with a CA and certificate made in DIR/tls;
    # each sidecar's peer API then on a port of its own, from this one (default: the
    # base gRPC port + PEER_PORT_OFFSET).
    tls: bool = False
    base_peer_port: int | None = None
    etcd_quota_bytes: int = ETCD_QUOTA_BYTES
    etcd_compaction_retention: str = ETCD_COMPACTION_RETENTION


class DataDirBusyError(Exception):
    """Another `actorflow up` holds the data directory."""
