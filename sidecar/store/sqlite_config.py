"""`SqliteConfig`, the sqlite store's settings, and how a connection to its file is opened
(shared by the writer thread and the reader thread)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sidecar.store.base import StoreConfigError

__all__ = ["SqliteConfig"]


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
    # Revisions reserved at a time (see `sidecar.store.sqlite`'s docstring); a crash
    # leaves the rest of a block unused, a harmless gap.
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
