"""`RaftConfig`: one frozen, validated description of a Raft node, and its translation
into pysyncobj's `SyncObjConf`.

pysyncobj reads its options with `kwargs.get(name, default)`, so a misspelt option is
silently ignored; here every value is checked up front (`ConfigError`) and unknown keys
are refused by `RaftConfig.from_mapping`.

Choices (DESIGN.md section 6):

- `appendEntriesUseBatch=False`: a command is sent to followers as soon as it is
  appended, so a commit takes about one round trip plus the journal syncs (~1 ms)
  instead of waiting for the next heartbeat (~100 ms).
- `leaderFallbackTimeout` 1 s (pysyncobj: 30 s): an isolated leader steps down quickly.
  `RaftNode.has_quorum` and the term fence are the real guards for leader-only actions.
- Heartbeat 100 ms (pysyncobj's own default), election timeout 0.4-0.8 s: loopback and
  LAN; tolerant of GC and scheduling pauses on a small, busy machine. Commands do not
  wait for a heartbeat (above), so the heartbeat only keeps leadership and carries the
  commit index to followers; at 50 ms an idle node took about 2.5% of a core, at 100 ms
  1.8% (bench/RESULTS.md, machine, 2026-11-28 22:15-22:55).
- `connectionRetryTime` 0.5 s (pysyncobj: 5 s): a restarted peer is reconnected quickly.
- `commandsWaitLeader=False`: without a leader a proposal fails at once with
  `NotLeaderError` instead of sitting in a queue and committing long after its caller
  gave up; callers retry with their own policy.
- The Raft port binds to `bind_address`, else to `self_address`'s host (pysyncobj alone
  would listen on 0.0.0.0).
- `useFork=False` (fork after gRPC starts is unsafe), `dynamicMembershipChange=False`
  (membership is fixed by configuration).
- Journal, journal meta and full dump live in `data_dir`: the durable journal's
  directory fsync also covers the dump's rename (see `raftkit.journal`).
- Transport security: `password` with `security="fernet"` is pysyncobj's own encryption
  (needs the `cryptography` package); `security="hmac"` authenticates every frame with
  HMAC-SHA256 using only the standard library (integrity and authentication, no
  confidentiality). Either way nothing unauthenticated reaches pysyncobj's unpickler.
  Running without a password requires `allow_insecure=True`.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkit.errors import ConfigError

__all__ = ["RaftConfig", "Security", "parse_address"]

# Largest encoded command RaftNode.propose accepts; see appendEntriesBatchSizeBytes.
MAX_COMMAND_BYTES = 8 * 1024 * 1024
CHUNK_MARGIN_BYTES = 64 * 1024

JOURNAL_FILE = "raft.journal"
PYSYNCOBJ_JOURNAL_FILE = "pysyncobj.journal"
DUMP_FILE = "raft.dump"

_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


class Security(enum.Enum):
    """How frames on the Raft port are protected when a password is set."""

    FERNET = "fernet"  # pysyncobj's encryptor: AES + HMAC (needs `cryptography`)
    HMAC = "hmac"  # raftkit.auth: HMAC-SHA256 authentication, standard library only


def parse_address(address: str, what: str = "address") -> tuple[str, int]:
    """Split and check 'host:port' (IPv4, hostname, or [IPv6]); raise ConfigError."""
    if not isinstance(address, str) or ":" not in address:
        raise ConfigError(f"{what} must be 'host:port', got {address!r}")
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(f"{what}: bad IPv6 host in {address!r}") from None
    elif not _HOST_RE.match(host):
        raise ConfigError(f"{what}: bad host in {address!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what}: port must be 1-65535 in {address!r}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """One Raft node. Times are in seconds.

    INVARIANT (checked in __post_init__): 3 * heartbeat < election_timeout_min <
    election_timeout_max <= connection_timeout, and heartbeat < leader_fallback_timeout.
    """

    self_address: str
    partners: tuple[str, ...]
    data_dir: Path
    password: str | None = None
    security: Security = Security.FERNET
    allow_insecure: bool = False
    durable_journal: bool = True
    heartbeat_interval_s: float = 0.1
    election_timeout_min_s: float = 0.4
    election_timeout_max_s: float = 0.8
    leader_fallback_timeout_s: float = 1.0
    connection_timeout_s: float = 2.0
    connection_retry_s: float = 0.5
    tick_period_s: float = 0.05
    commands_queue_size: int = 100_000
    log_compaction_min_entries: int = 5000
    log_compaction_min_time_s: float = 300.0
    bind_address: str | None = None
    bind_retries: int = 25
    bind_retry_s: float = 0.2
    # pysyncobj caches resolved peer names (600 s by default): a peer that comes back
    # under a new IP (a rescheduled pod) would be dialled at the old one for minutes.
    dns_cache_s: float = 5.0
    dns_fail_cache_s: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.partners, str) or not isinstance(self.partners, (list, tuple)):
            raise ConfigError(f"partners must be a list of 'host:port', got {self.partners!r}")
        set_(self, "partners", tuple(self.partners))
        if not isinstance(self.data_dir, (str, os.PathLike)) or not str(self.data_dir):
            raise ConfigError(f"data_dir must be a non-empty path, got {self.data_dir!r}")
        set_(self, "data_dir", Path(self.data_dir))
        if isinstance(self.security, str):
            try:
                set_(self, "security", Security(self.security))
            except ValueError:
                choices = ", ".join(s.value for s in Security)
                raise ConfigError(f"security must be one of {choices}") from None
        self._check_types()
        self._check_addresses()
        self._check_secret()
        self._check_positive()
        self._check_times()

    def _check_types(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            check = _TYPE_CHECKS.get(f.name)
            if check is not None and not check(value):
                raise ConfigError(f"{f.name}: wrong type or value {value!r}")

    def _check_addresses(self) -> None:
        parse_address(self.self_address, "self_address")
        for partner in self.partners:
            parse_address(partner, "partner")
        if self.self_address in self.partners:
            raise ConfigError(f"self_address {self.self_address!r} is also listed as a partner")
        if len(set(self.partners)) != len(self.partners):
            raise ConfigError(f"duplicate partners in {list(self.partners)!r}")
        if self.bind_address is not None:
            parse_address(self.bind_address, "bind_address")

    def _check_secret(self) -> None:
        if self.password is not None and not self.password:
            raise ConfigError("password is empty: set a shared secret or None")
        if self.password is None and not self.allow_insecure:
            raise ConfigError(
                "no password: the Raft port would unpickle whatever reaches it; "
                "set a shared secret (or allow_insecure=True for throwaway tests)"
            )

    def _check_positive(self) -> None:
        positive = (
            "heartbeat_interval_s",
            "election_timeout_min_s",
            "election_timeout_max_s",
            "leader_fallback_timeout_s",
            "connection_timeout_s",
            "tick_period_s",
            "log_compaction_min_time_s",
            "bind_retry_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.connection_retry_s < 0:
            raise ConfigError("connection_retry_s must not be negative")

    def _check_times(self) -> None:
        if not self.election_timeout_min_s > 3 * self.heartbeat_interval_s:
            raise ConfigError("election_timeout_min_s must exceed 3 * heartbeat_interval_s")
        if not self.election_timeout_max_s > self.election_timeout_min_s:
            raise ConfigError("election_timeout_max_s must exceed election_timeout_min_s")
        if not self.leader_fallback_timeout_s > self.heartbeat_interval_s:
            raise ConfigError("leader_fallback_timeout_s must exceed heartbeat_interval_s")
        if self.connection_timeout_s < self.election_timeout_max_s:
            raise ConfigError("connection_timeout_s must be at least election_timeout_max_s")
        if self.log_compaction_min_entries < 2:
            raise ConfigError("log_compaction_min_entries must be at least 2")
        if self.commands_queue_size < 1:
            raise ConfigError("commands_queue_size must be at least 1")
        if self.bind_retries < 1:
            raise ConfigError("bind_retries must be at least 1 (0 would retry forever)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RaftConfig:
        """Build from a dict (a parsed YAML/JSON/TOML file, CLI flags). Unknown keys are an
        error, unlike pysyncobj, which ignores misspelt options."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown raft config keys: {', '.join(map(repr, unknown))}")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in values
        )
        if missing:
            raise ConfigError(f"missing raft config keys: {', '.join(missing)}")
        return cls(**dict(values))

    @property
    def cluster_size(self) -> int:
        return len(self.partners) + 1

    @property
    def journal_path(self) -> Path:
        name = JOURNAL_FILE if self.durable_journal else PYSYNCOBJ_JOURNAL_FILE
        return self.data_dir / name

    @property
    def dump_path(self) -> Path:
        return self.data_dir / DUMP_FILE

    def to_syncobj_conf(self, **hooks: Any) -> Any:
        """The pysyncobj `SyncObjConf` for this node. `hooks` are pysyncobj callbacks
        (`serializer`, `deserializer`, `onStateChanged`, `onReady`) passed as is."""
        from pysyncobj import SyncObjConf

        allowed_hooks = {"serializer", "deserializer", "onStateChanged", "onReady"}
        if set(hooks) - allowed_hooks:
            raise ConfigError(f"unknown pysyncobj hooks {sorted(set(hooks) - allowed_hooks)}")
        conf = SyncObjConf(
            password=self._fernet_password(),
            autoTick=True,
            autoTickPeriod=self.tick_period_s,
            commandsQueueSize=self.commands_queue_size,
            raftMinTimeout=self.election_timeout_min_s,
            raftMaxTimeout=self.election_timeout_max_s,
            appendEntriesPeriod=self.heartbeat_interval_s,
            connectionTimeout=self.connection_timeout_s,
            connectionRetryTime=self.connection_retry_s,
            leaderFallbackTimeout=self.leader_fallback_timeout_s,
            appendEntriesUseBatch=False,
            # pysyncobj 0.3.17 splits an entry at least this long into chunks and marks the
            # last chunk by comparing offsets in the pickled entry with the length of the
            # raw command, so a follower can take a truncated entry and stop following.
            # Keep every entry below it: RaftNode.propose refuses longer commands.
            appendEntriesBatchSizeBytes=MAX_COMMAND_BYTES + CHUNK_MARGIN_BYTES,
            # pysyncobj would bind 0.0.0.0 when given no bind address.
            bindAddress=self.bind_address or self.self_address,
            logCompactionMinEntries=self.log_compaction_min_entries,
            logCompactionMinTime=self.log_compaction_min_time_s,
            logCompactionSplit=False,
            commandsWaitLeader=False,
            fullDumpFile=str(self.dump_path),
            journalFile=str(self.journal_path),
            bindRetryTime=self.bind_retry_s,
            dnsCacheTime=self.dns_cache_s,
            dnsFailCacheTime=self.dns_fail_cache_s,
            maxBindRetries=self.bind_retries,
            dynamicMembershipChange=False,
            useFork=False,
            **hooks,
        )
        try:
            conf.validate()
        except AssertionError as exc:  # pysyncobj validates with bare asserts
            raise ConfigError(f"pysyncobj rejected the configuration: {exc!r}") from None
        return conf

    def _fernet_password(self) -> str | None:
        if self.password is None or self.security is not Security.FERNET:
            return None
        from pysyncobj import HAS_CRYPTO

        if not HAS_CRYPTO:
            raise ConfigError(
                "security='fernet' needs the 'cryptography' package, which is not installed; "
                "install it or use security='hmac' (authenticated, not encrypted)"
            )
        return self.password


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_opt_str(v: object) -> bool:
    return v is None or isinstance(v, str)


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_TYPE_CHECKS: dict[str, Callable[[object], bool]] = {
    "self_address": _is_str,
    "partners": lambda v: isinstance(v, tuple) and all(isinstance(p, str) for p in v),
    "password": _is_opt_str,
    "security": lambda v: isinstance(v, Security),
    "allow_insecure": _is_bool,
    "durable_journal": _is_bool,
    "heartbeat_interval_s": _is_number,
    "election_timeout_min_s": _is_number,
    "election_timeout_max_s": _is_number,
    "leader_fallback_timeout_s": _is_number,
    "connection_timeout_s": _is_number,
    "connection_retry_s": _is_number,
    "tick_period_s": _is_number,
    "commands_queue_size": _is_int,
    "log_compaction_min_entries": _is_int,
    "log_compaction_min_time_s": _is_number,
    "bind_address": _is_opt_str,
    "bind_retries": _is_int,
    "bind_retry_s": _is_number,
    "dns_cache_s": _is_number,
    "dns_fail_cache_s": _is_number,
}
