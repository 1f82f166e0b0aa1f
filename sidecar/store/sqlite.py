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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sidecar.store.base import (
    NO_EXPECT,
    ConflictError,
    StoreConfigError,
    StoreLimits,
    StoreUnavailableError,
    Versioned,
    check_transaction,
    prefix_upper_bound,
)

__all__ = ["SqliteConfig", "SqliteStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS kv_revision ("
    " id INTEGER PRIMARY KEY CHECK (id = 0), revision INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO kv_revision (id, revision) VALUES (0, 0)",
)
# Rows per statement of a write: at most `_ROWS_PER_STATEMENT`, the rest split into powers
# of two, so a connection prepares at most 9 shapes of each (its cache holds 128).
_ROWS_PER_STATEMENT = 256  # x 3 parameters, far under SQLite's 32,766
_VERSION = "SELECT version FROM kv WHERE key = ?"
_RESERVE = "UPDATE kv_revision SET revision = revision + ? WHERE id = 0 RETURNING revision"
_READ_CHUNK = 500  # bound parameters per SELECT ... IN (...)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SqliteConfig:
    path: Path
    busy_timeout_ms: int = 10_000
    max_txn_ops: int = 100_000
    max_txn_bytes: int = 64 << 20
    # Group commit folds queued transactions into one commit up to this many writes.
    max_batch_ops: int = 10_000
    # Under load (the last commit held several jobs that are not `background` and ended
    # less than `linger_after_s` ago) the writer waits up to `linger_s` at a time for
    # more jobs while it has fewer than `linger_until_jobs`.
    linger_s: float = 0.0005
    linger_after_s: float = 0.002
    linger_until_jobs: int = 16
    # While every job gathered is a `background` one, the writer waits for more up to
    # `background_linger_s` after taking the first, or until it has
    # `background_until_jobs`; a job that is not background ends the wait at once.
    background_linger_s: float = 0.005
    background_until_jobs: int = 256
    # Revisions reserved at a time (see the module docstring); a crash leaves the rest
    # of a block unused, a harmless gap.
    revision_block: int = 1024

    def __post_init__(self) -> None:
        if self.busy_timeout_ms < 0:
            raise StoreConfigError(f"busy_timeout_ms must be >= 0, got {self.busy_timeout_ms}")
        if self.max_batch_ops < 1:
            raise StoreConfigError(f"max_batch_ops must be >= 1, got {self.max_batch_ops}")
        if self.revision_block < 1:
            raise StoreConfigError(f"revision_block must be >= 1, got {self.revision_block}")
        if min(self.linger_s, self.linger_after_s, self.background_linger_s) < 0:
            raise StoreConfigError("linger_s, linger_after_s and background_linger_s must be >= 0")
        if min(self.linger_until_jobs, self.background_until_jobs) < 1:
            raise StoreConfigError("linger_until_jobs and background_until_jobs must be >= 1")


def _connect(config: SqliteConfig) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(config.path, timeout=config.busy_timeout_ms / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout_ms)}")
    return conn


@dataclass(eq=False, slots=True)
class _Job:
    writes: dict[str, bytes | None]
    expect: dict[str, int]
    future: asyncio.Future[int]
    background: bool = False
    outcome: int | BaseException = field(default=0)


def _deliver(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():  # the caller gave up (cancelled); the outcome stands
            continue
        if isinstance(job.outcome, BaseException):
            job.future.set_exception(job.outcome)
        else:
            job.future.set_result(job.outcome)


class _Writer(threading.Thread):
    """Owns the write connection; group-commits queued jobs (see the module docstring)."""

    def __init__(self, config: SqliteConfig, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=f"sqlite-writer:{config.path.name}", daemon=True)
        self.config = config
        self.loop = loop
        # Lists of jobs: everything `transact` queued during one pass of the event loop
        # arrives as one item, so the thread is woken once for them, not once each.
        self.jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.commits = 0  # written by this thread only; read for statistics
        # The block of revisions reserved and not handed out yet: next..last.
        self._next_revision, self._last_revision = 1, 0

    def run(self) -> None:
        try:
            conn = _connect(self.config)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            err = StoreUnavailableError(f"cannot open sqlite store {self.config.path}: {exc}")
            self._call(self.ready.set_exception, err)
            return
        self._call(self.ready.set_result, None)
        try:
            self._serve(conn)
        finally:
            conn.close()

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(fn, *args)

    def _serve(self, conn: sqlite3.Connection) -> None:
        stopping = False
        last_commit, last_waited_on = 0.0, 0
        while not stopping:
            jobs = self.jobs.get()
            if jobs is None:
                return
            batch = jobs
            # Busy (the last commit held several jobs someone waited on and ended moments
            # ago): linger briefly for more, so that a stream of single writes shares
            # commits. Idle, or one caller writing in turn (each commit one such job, and
            # maybe background ones that rode along): commit at once.
            linger = (
                last_waited_on > 1 and time.monotonic() - last_commit < self.config.linger_after_s
            )
            stopping = self._gather(batch, linger)
            self._commit(conn, batch)
            self.commits += 1
            last_commit = time.monotonic()
            last_waited_on = sum(not job.background for job in batch)
            self._call(_deliver, batch)

    def _gather(self, batch: list[_Job], linger: bool) -> bool:
        """Add queued jobs to `batch` until none is left to wait for (the module
        docstring says how long it waits); True when the stop sentinel came."""
        cfg = self.config
        ops = sum(len(job.writes) for job in batch)
        foreground = any(not job.background for job in batch)
        background_until = time.monotonic() + cfg.background_linger_s
        while ops < cfg.max_batch_ops:
            if not foreground and len(batch) < cfg.background_until_jobs:
                wait = background_until - time.monotonic()
            elif linger and len(batch) < cfg.linger_until_jobs:
                wait = cfg.linger_s
            else:
                wait = 0.0
            try:
                more = self.jobs.get(timeout=wait) if wait > 0 else self.jobs.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            batch.extend(more)
            ops += sum(len(job.writes) for job in more)
            foreground = foreground or any(not job.background for job in more)
        return False

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # The block may have been reserved in this very transaction: drop it.
                self._next_revision, self._last_revision = 1, 0
                raise
        except sqlite3.Error as exc:
            for job in batch:
                job.outcome = StoreUnavailableError(
                    f"sqlite transaction on {self.config.path} failed, nothing written: {exc}"
                )

    def _revisions(self, conn: sqlite3.Connection, count: int) -> int:
        """The first of `count` consecutive revisions no transaction has had, from the
        reserved block, reserving a new one in this transaction when it runs short."""
        if self._last_revision - self._next_revision + 1 < count:
            size = max(count, self.config.revision_block)
            (end,) = conn.execute(_RESERVE, (size,)).fetchone()
            self._next_revision, self._last_revision = end - size + 1, end
        first = self._next_revision
        self._next_revision += count
        return first

    def _apply(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        # One revision per job; a job that conflicts or writes nothing leaves a gap,
        # harmless since versions are only compared.
        revision = self._revisions(conn, len(batch)) - 1
        for job in batch:
            conflict = _find_conflict(conn, job.expect)
            if conflict is not None:
                job.outcome = conflict
                continue
            revision += 1
            if not job.writes:
                job.outcome = 0
                continue
            puts = [(k, v) for k, v in job.writes.items() if v is not None]
            _put(conn, puts, revision)
            if len(puts) != len(job.writes):
                _delete(conn, [k for k, v in job.writes.items() if v is None])
            job.outcome = revision


# Rows go several to a statement, not one statement each: a 1,000-row checkpoint takes
# about 18% less time (bench/RESULTS.md, checkpoint), and each statement stepped also
# hands the GIL to the event loop and must wait to take it back.


def _sizes(count: int) -> Iterator[int]:
    """`count` split into statement sizes: whole `_ROWS_PER_STATEMENT`s, then powers of two."""
    whole, rest = divmod(count, _ROWS_PER_STATEMENT)
    yield from (_ROWS_PER_STATEMENT,) * whole
    size = _ROWS_PER_STATEMENT // 2
    while rest:
        if rest >= size:
            yield size
            rest -= size
        size //= 2


@functools.cache
def _put_sql(rows: int) -> str:
    return "INSERT OR REPLACE INTO kv (key, value, version) VALUES " + ",".join(("(?,?,?)",) * rows)


@functools.cache
def _delete_sql(rows: int) -> str:
    return f"DELETE FROM kv WHERE key IN ({','.join('?' * rows)})"


def _put(conn: sqlite3.Connection, puts: list[tuple[str, bytes]], revision: int) -> None:
    start = 0
    for size in _sizes(len(puts)):
        args: list[object] = []
        for key, value in puts[start : start + size]:
            args += (key, value, revision)
        conn.execute(_put_sql(size), args)
        start += size


def _delete(conn: sqlite3.Connection, keys: list[str]) -> None:
    start = 0
    for size in _sizes(len(keys)):
        conn.execute(_delete_sql(size), keys[start : start + size])
        start += size


def _find_conflict(conn: sqlite3.Connection, expect: Mapping[str, int]) -> ConflictError | None:
    for key, expected in expect.items():
        row = conn.execute(_VERSION, (key,)).fetchone()
        actual = row[0] if row is not None else 0
        if actual != expected:
            return ConflictError(key, expected, actual)
    return None


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
