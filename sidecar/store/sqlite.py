"""`SqliteStore`: the default state store, one database file shared by every sidecar of a
machine.

Layout: table `kv (key TEXT PRIMARY KEY, value BLOB, version INTEGER) WITHOUT ROWID`
plus a one-row table `kv_revision` holding the last revision handed out. Versions are
revisions, as in etcd: a transaction takes a revision no other transaction on the file
has had and stamps it on every key it puts, so a key deleted and created again never
gets an old version back (a per-key counter would restart at 1 and let a stale `expect`
pass). Each writer reserves revisions in blocks (`SqliteConfig.revision_block`), so the
`kv_revision` row is written once per block, not with every commit (one page of WAL
fewer per commit); the revisions of one writer increase, those of several processes on
one file interleave by block, and versions are only ever compared for equality.

Threads: sqlite calls block, so none runs on the event loop.
- One writer thread owns the write connection (WAL, `synchronous=FULL`, so a returned
  `transact` survives power loss). It group-commits: whatever `transact` calls queued
  while the previous commit ran go into one `BEGIN IMMEDIATE ... COMMIT` (one fsync);
  the calls of one event-loop pass are handed to it together (one wake-up), and
  under load it waits a little for more (see `SqliteConfig.linger_s`),
  each checked and applied in order, so each still sees the ones before it and a
  conflicting one is skipped alone (its checks run before any of its writes). While
  only `background` writes wait (nobody's progress hangs on them: an activity's saved
  outcome), it holds them up to `SqliteConfig.background_linger_s` so that many share
  one commit; any other write takes them along at once.
- One reader thread with its own connection serves `get_many` and `scan_prefix`; WAL
  lets it read while the writer writes. A read spanning several statements runs inside
  one read transaction, so it sees one snapshot.
Several processes may open the same file: `BEGIN IMMEDIATE` takes the write lock up
front and `busy_timeout` makes the others wait for it instead of failing; a writer still
locked out after that raises `StoreUnavailableError`.

Modules: `sqlite_config` (`SqliteConfig`, opening a connection), `sqlite_writer` (the
writer thread), `sqlite_sql` (schema, statements, multi-row puts and deletes); this one
holds `SqliteStore` itself and the reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sidecar.store.base import (
    NO_EXPECT,
    StoreLimits,
    StoreUnavailableError,
    Versioned,
    check_transaction,
    prefix_upper_bound,
)
from sidecar.store.sqlite_config import SqliteConfig, _connect
from sidecar.store.sqlite_sql import _ROWS_PER_STATEMENT, _sizes
from sidecar.store.sqlite_writer import _Job, _Writer

# Names defined beside this module are re-exported: callers import `SqliteConfig`, and
# tests the private ones, from here.
__all__ = ["_ROWS_PER_STATEMENT", "SqliteConfig", "SqliteStore", "_Writer", "_sizes"]

_READ_CHUNK = 500  # bound parameters per SELECT ... IN (...)

T = TypeVar("T")


class SqliteStore:
    """Open with `await SqliteStore.open(SqliteConfig(path))`; see the module docstring."""

    def __init__(self, config: SqliteConfig, writer: _Writer) -> None:
        self._config = config
        self._limits = StoreLimits(config.max_txn_ops, config.max_txn_bytes)
        self._writer = writer
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-reader:{config.path}")
        self._closed = False
        self._outbox: list[_Job] = []  # jobs of this loop pass, not yet handed over

    @classmethod
    async def open(cls, config: SqliteConfig) -> SqliteStore:
        writer = _Writer(config, asyncio.get_running_loop())
        writer.start()
        await writer.ready
        return cls(config, writer)

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    @property
    def commits(self) -> int:
        """Commits made so far (each holds one or more `transact` calls)."""
        return self._writer.commits

    @property
    def path(self) -> Path:
        return self._config.path

    # -- reads (reader thread) ------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._config)
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailableError(f"sqlite store {self._config.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, self._run_read, fn)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"sqlite read on {self._config.path}: {exc}") from exc

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for every statement of this read
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        wanted = list(dict.fromkeys(keys))

        def read(conn: sqlite3.Connection) -> dict[str, Versioned]:
            found: dict[str, Versioned] = {}
            for i in range(0, len(wanted), _READ_CHUNK):
                chunk = wanted[i : i + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value, version FROM kv WHERE key IN ({marks})"
                for key, value, version in conn.execute(sql, chunk):
                    found[key] = Versioned(value, version)
            return found

        if not wanted:
            return {}
        return await self._read(read)

    async def scan_prefix(
        self, prefix: str, *, limit: int | None = None
    ) -> list[tuple[str, Versioned]]:
        upper = prefix_upper_bound(prefix)
        sql = "SELECT key, value, version FROM kv WHERE key >= ?"
        args: list[object] = [prefix]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)

        def read(conn: sqlite3.Connection) -> list[tuple[str, Versioned]]:
            return [(k, Versioned(v, ver)) for k, v, ver in conn.execute(sql, args)]

        return await self._read(read)

    # -- writes (writer thread) -----------------------------------------------------

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        if self._closed:
            raise StoreUnavailableError(f"sqlite store {self._config.path} is closed")
        check_transaction(writes, expect, self._limits)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if not self._outbox:
            loop.call_soon(self._hand_over)
        self._outbox.append(_Job(dict(writes), dict(expect), future, background))
        return await future

    def _hand_over(self) -> None:
        jobs, self._outbox = self._outbox, []
        if jobs:
            self._writer.jobs.put(jobs)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._writer.jobs.put(None)  # after every queued job: they still commit
        await asyncio.to_thread(self._writer.join)
        await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=False)

    def _close_reader(self) -> None:
        for conn in self._readers:
            conn.close()
        self._readers.clear()
