"""Configuration of one sidecar, validated up front."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from placement.names import MAX_NAME_LENGTH, NAME_CHARS, is_valid_name
from raftkit.config import parse_address
from raftkit.errors import ConfigError
from raftkit.tls import TlsFiles

WILDCARD_HOSTS = frozenset({"0.0.0.0", "[::]"})


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    app_id: str = "app"
    namespace: str = "default"
    # The app-facing Durable Task API, and the peer API unless `peer_address` is set.
    grpc_address: str = "127.0.0.1:50001"
    http_address: str = "127.0.0.1:3500"
    # The peer API (other sidecars' actor calls) on a port of its own; required with TLS.
    peer_address: str | None = None
    # What other sidecars dial (the peer port); also this sidecar's name in placement.
    advertise_address: str | None = None
    placement: tuple[str, ...] = ()
    reminders: tuple[str, ...] = ()
    store_url: str = "sqlite://.actorflow/state.db"
    api_token: str | None = None
    test_actors: bool = False
    turn_log: Path | None = None
    idle_timeout_s: float = 60.0
    drain_timeout_s: float = 10.0
    call_timeout_s: float = 30.0
    # Seconds between the checks of saved activity outcomes that may have landed after
    # their instance was purged (sidecar.engine.activity_sweep).
    activity_sweep_s: float = 5.0
    # Seconds work may wait with no app connected before the sidecar warns of it
    # (sidecar.engine.app_wait); again each minute while it lasts.
    app_wait_warn_s: float = 10.0
    max_payload_bytes: int = 4 * 1024 * 1024
    # Work items one app connection may hold unanswered, 0: no limit (sidecar.engine.apps).
    app_activity_window: int = 0
    app_workflow_window: int = 0
    # Mutual TLS to placement, reminders and the other sidecars (raftkit.tls).
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if not is_valid_name(self.app_id):
            raise ConfigError(
                f"app id {self.app_id[:80]!r} is invalid: 1 to {MAX_NAME_LENGTH} characters "
                f"among {NAME_CHARS} (placement refuses any other)"
            )
        if not self.namespace:
            raise ConfigError("namespace must not be empty")
        parse_address(self.grpc_address, "grpc_address")
        parse_address(self.http_address, "http_address")
        if self.advertise_address is not None:
            parse_address(self.advertise_address, "advertise_address")
        if self.peer_address is not None:
            parse_address(self.peer_address, "peer_address")
        elif self.tls is not None:
            raise ConfigError(
                "with TLS the peer API needs a port of its own (--peer-address): the app's "
                "port stays plaintext, for an SDK that presents no certificate"
            )
        if not self.placement:
            raise ConfigError("at least one placement address is needed")
        for address in (*self.placement, *self.reminders):
            parse_address(address, "placement/reminders address")
        if self.api_token is not None and not self.api_token:
            raise ConfigError("api_token must not be empty when set")
        self._check_dialable()
        self._check_limits()

    def _check_dialable(self) -> None:
        """The address placement gives the other sidecars (and this sidecar's name there)
        must be one they can dial: a wildcard bind address is not, and two sidecars of
        two hosts would also share one name."""
        host, _ = parse_address(self.name, "advertised address")
        if host in WILDCARD_HOSTS:
            raise ConfigError(
                f"other sidecars would dial {self.name}, which is no one's address: set "
                "--advertise-address to this host's address and the peer (or gRPC) port"
            )

    def _check_limits(self) -> None:
        for name in (
            "idle_timeout_s", "drain_timeout_s", "call_timeout_s", "activity_sweep_s",
            "app_wait_warn_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        if self.max_payload_bytes < 1024:
            raise ConfigError(
                f"max_payload_bytes must be at least 1024, got {self.max_payload_bytes}"
            )
        if min(self.app_activity_window, self.app_workflow_window) < 0:
            raise ConfigError("app windows must be 0 (no limit) or more")

    @property
    def name(self) -> str:
        return self.advertise_address or self.peer_address or self.grpc_address

    def actor_type(self, kind: str) -> str:
        """The internal actor types of the workflow engine: dapr.internal.{ns}.{app}.{kind}."""
        return f"dapr.internal.{self.namespace}.{self.app_id}.{kind}"
