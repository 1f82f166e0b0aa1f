"""`_Writer`, the sqlite store's writer thread: it owns the write connection and
group-commits the queued transactions (how, and how long it waits for more, is in
`sidecar.store.sqlite`'s docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.store.base import StoreUnavailableError
from sidecar.store.sqlite_config import SqliteConfig, _connect
from sidecar.store.sqlite_sql import _RESERVE, _SCHEMA, _delete, _find_conflict, _put


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
    """Owns the write connection; group-commits queued jobs (see the module docstrings)."""

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
        docstring of `sidecar.store.sqlite` says how long it waits); True when the stop
        sentinel came."""
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
