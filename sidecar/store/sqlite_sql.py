"""The SQL of the sqlite store's writer: the schema, the statements it runs, and puts and
deletes of many rows in few statements."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Mapping

from sidecar.store.base import ConflictError

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
