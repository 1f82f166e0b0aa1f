"""`EtcdConfig` and `EtcdTls`, the etcd store's settings, and `etcd_limits`, what one
transaction may carry on the cluster they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from sidecar.store.base import StoreConfigError, StoreLimits

__all__ = ["EtcdConfig", "EtcdTls", "etcd_limits"]

# What framing each put or delete of a Txn adds to its key and value, at most (tags and
# length varints of the op in `success`, its RequestOp and its Put/DeleteRangeRequest:
# 6-15 bytes measured; 20 bounds values up to 256 MiB). Counted per write into
# `StoreLimits.max_bytes`; the margin below is for the request's own fields and the
# compares of the expected versions.
_OP_BYTES = 20
_BYTES_MARGIN = 64 * 1024


@dataclass(frozen=True, slots=True)
class EtcdTls:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise StoreConfigError("etcd TLS: give both cert and key for mutual TLS, or neither")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    endpoints: tuple[str, ...]
    tls: EtcdTls | None = None
    timeout_s: float = 10.0  # one store call, failover included
    attempt_timeout_s: float = 3.0  # one RPC on one endpoint
    connect_timeout_s: float = 1.0
    max_txn_ops: int = 128  # = the server's --max-txn-ops
    max_request_bytes: int = 1_572_864  # = the server's --max-request-bytes

    def __post_init__(self) -> None:
        if not self.endpoints or any(":" not in e for e in self.endpoints):
            raise StoreConfigError(f"etcd endpoints must be host:port, got {self.endpoints}")
        if min(self.timeout_s, self.attempt_timeout_s, self.connect_timeout_s) <= 0:
            raise StoreConfigError("etcd timeouts must be positive")
        if self.max_request_bytes <= _BYTES_MARGIN:
            raise StoreConfigError(f"max_request_bytes must exceed {_BYTES_MARGIN}")


def etcd_limits(config: EtcdConfig) -> StoreLimits:
    """What one transaction may carry on the etcd cluster `config` names."""
    return StoreLimits(config.max_txn_ops, config.max_request_bytes - _BYTES_MARGIN, _OP_BYTES)
