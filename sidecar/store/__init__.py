"""State stores: where actor state lives (DESIGN 3.4), behind one narrow contract.

The contract (`base.StateStore`), the same on every implementation and checked by one
contract suite (tests/store/test_contract.py) against all of them:
- keys are non-empty str (`{appID}||{actorType}||{actorID}||{key}`), values bytes;
- `get_many(keys)` -> {key: Versioned(value, version)} for the present keys, one snapshot;
- `scan_prefix(prefix, limit=None)` -> [(key, Versioned)] sorted by key (code point order,
  which is UTF-8 byte order), one snapshot;
- `transact(writes, expect=...)` -> revision: applies every write (None = delete)
  atomically iff each key in `expect` has that version now (0 = absent), else raises
  `ConflictError(key, expected, actual)` and writes nothing. A checkpoint (one
  orchestrator turn) is one `transact`.
- versions are revisions, as in etcd: a transaction's writes all get the next revision of
  the whole store, so a version is an int > 0 that changes on every write of a key and
  never comes back, not even after a delete and re-create. `transact` returns it.
- `limits` (`StoreLimits(max_ops, max_bytes)`): the engine plans chunked checkpoints with
  it; a bigger transaction raises `TransactionTooLargeError` before anything is sent.
- errors: `StoreError` -> `ConflictError`, `StoreUnavailableError` (->
  `TransactionOutcomeUnknownError`: sent, answer lost, may have been applied),
  `TransactionTooLargeError`, `StoreConfigError`.
- `close()`; transactions queued before it still complete.

What lives where:
- `base`: the protocol, `Versioned`, `StoreLimits`, errors, pure helpers.
- `memory`: `MemoryStore`, for tests.
- `sqlite`: `SqliteStore`, the default (WAL, synchronous=FULL, group commit on one writer
  thread, one file shared by every sidecar of the machine), and its reads. Beside it:
  `sqlite_config` (`SqliteConfig`, opening a connection), `sqlite_writer` (the writer
  thread) and `sqlite_sql` (schema, statements, multi-row puts and deletes); `sqlite`
  re-exports what is imported from it.
- `etcd`: `EtcdStore` (many endpoints with failover, optional TLS, fenced retries).
  Beside it: `etcd_config` (`EtcdConfig`, `EtcdTls`, `etcd_limits`), `etcd_rpc` (one
  channel per endpoint, reading RPC errors) and `etcd_messages` (Txn requests, conflicts,
  prefix ranges; pure); `etcd` re-exports what is imported from it.
- `write_groups`: `WriteGroups`, which merges writes without `expect` into shared Txns.
- `gated`: `GatedStore`, a memory store for tests whose transactions can be held.
- `factory`: `open_store("memory://" | "sqlite:///path.db" | "etcd://h1:2379,h2:2379?...")`.
- `testing`: `EtcdCluster`, real etcd members on loopback for tests and the bench.
"""

from __future__ import annotations

from sidecar.store.base import (
    NO_EXPECT,
    ConflictError,
    StateStore,
    StoreConfigError,
    StoreError,
    StoreLimits,
    StoreUnavailableError,
    TransactionOutcomeUnknownError,
    TransactionTooLargeError,
    Versioned,
)
from sidecar.store.etcd import EtcdConfig, EtcdStore, EtcdTls
from sidecar.store.factory import StoreConfig, open_store, parse_store_url
from sidecar.store.memory import MemoryConfig, MemoryStore
from sidecar.store.sqlite import SqliteConfig, SqliteStore

__all__ = [
    "NO_EXPECT",
    "ConflictError",
    "EtcdConfig",
    "EtcdStore",
    "EtcdTls",
    "MemoryConfig",
    "MemoryStore",
    "SqliteConfig",
    "SqliteStore",
    "StateStore",
    "StoreConfig",
    "StoreConfigError",
    "StoreError",
    "StoreLimits",
    "StoreUnavailableError",
    "TransactionOutcomeUnknownError",
    "TransactionTooLargeError",
    "Versioned",
    "open_store",
    "parse_store_url",
]
