"""`open_store`: a state store from a URL or a config object.

URLs (query values are validated; unknown keys are refused):
- `memory://[?max_txn_ops=N&max_txn_bytes=N]`
- `sqlite://PATH[?busy_timeout_ms=N&max_txn_ops=N&max_txn_bytes=N]`: everything after
  `sqlite://` is the path, so `sqlite:///var/lib/actorflow/state.db` is absolute and
  `sqlite://state.db` relative to the working directory.
- `etcd://HOST:PORT[,HOST:PORT...][?ca=PEM&cert=PEM&key=PEM&server_name=NAME
  &timeout_s=S&attempt_timeout_s=S&connect_timeout_s=S&max_txn_ops=N&max_request_bytes=N]`:
  TLS is on when `ca` is given (`cert` + `key` add a client certificate); `max_txn_ops`
  and `max_request_bytes` must match the server's `--max-txn-ops` and
  `--max-request-bytes` (defaults: etcd's, 128 and 1572864).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from sidecar.store.base import StateStore, StoreConfigError
from sidecar.store.etcd import EtcdConfig, EtcdStore, EtcdTls
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.store.sqlite import SqliteConfig, SqliteStore

__all__ = ["StoreConfig", "open_store", "parse_store_url"]

StoreConfig = MemoryConfig | SqliteConfig | EtcdConfig

_INT: Callable[[str], Any] = int
_FLOAT: Callable[[str], Any] = float
_QUERY: dict[str, dict[str, Callable[[str], Any]]] = {
    "memory": {"max_txn_ops": _INT, "max_txn_bytes": _INT},
    "sqlite": {"busy_timeout_ms": _INT, "max_txn_ops": _INT, "max_txn_bytes": _INT},
    "etcd": {
        "ca": Path,
        "cert": Path,
        "key": Path,
        "server_name": str,
        "timeout_s": _FLOAT,
        "attempt_timeout_s": _FLOAT,
        "connect_timeout_s": _FLOAT,
        "max_txn_ops": _INT,
        "max_request_bytes": _INT,
    },
}


def _query(scheme: str, text: str) -> dict[str, Any]:
    allowed = _QUERY[scheme]
    values: dict[str, Any] = {}
    for key, raw in parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)):
        if key not in allowed:
            raise StoreConfigError(
                f"unknown {scheme} store option {key!r} (known: {', '.join(sorted(allowed))})"
            )
        try:
            values[key] = allowed[key](raw)
        except ValueError as exc:
            raise StoreConfigError(f"bad value for {scheme} store option {key}: {raw!r}") from exc
    return values


def parse_store_url(url: str) -> StoreConfig:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _QUERY:
        raise StoreConfigError(
            f"store URL must start with memory://, sqlite:// or etcd://, got {url!r}"
        )
    location, _, query = rest.partition("?")
    options = _query(scheme, query)
    if scheme == "memory":
        if location:
            raise StoreConfigError(f"memory:// takes no location, got {location!r}")
        return MemoryConfig(**options)
    if scheme == "sqlite":
        if not location:
            raise StoreConfigError("sqlite:// needs a file path, e.g. sqlite:///tmp/state.db")
        return SqliteConfig(Path(location), **options)
    tls_keys = {"ca": "ca_file", "cert": "cert_file", "key": "key_file", "server_name": ""}
    tls = {name: options.pop(key) for key, name in tls_keys.items() if key in options}
    if "" in tls:
        tls["server_name"] = tls.pop("")
    if tls and "ca_file" not in tls:
        raise StoreConfigError("etcd TLS options need ca=PATH (the CA of the etcd servers)")
    endpoints = tuple(e for e in location.split(",") if e)
    return EtcdConfig(endpoints, tls=EtcdTls(**tls) if tls else None, **options)


async def open_store(url_or_config: str | StoreConfig) -> StateStore:
    """Open the store a URL (see the module docstring) or a config object names."""
    config = parse_store_url(url_or_config) if isinstance(url_or_config, str) else url_or_config
    match config:
        case MemoryConfig():
            return MemoryStore(config)
        case SqliteConfig():
            return await SqliteStore.open(config)
        case EtcdConfig():
            return await EtcdStore.open(config)
    raise StoreConfigError(f"not a store config: {config!r}")
