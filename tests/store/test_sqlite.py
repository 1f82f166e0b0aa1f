"""SqliteStore beyond the contract: one file shared by processes, reopening, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.store import (
    ConflictError,
    SqliteConfig,
    SqliteStore,
    StoreConfigError,
    StoreUnavailableError,
    Versioned,
)
from sidecar.store.sqlite import _ROWS_PER_STATEMENT, _sizes, _Writer

# The other process: N read-modify-write increments of one counter, retried on conflict.
_INCREMENTER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from sidecar.store import ConflictError, SqliteConfig, SqliteStore

    async def main(path: str, n: int) -> None:
        store = await SqliteStore.open(SqliteConfig(Path(path)))
        print("ready", flush=True)
        sys.stdin.readline()  # go
        for i in range(n):
            while True:
                cur = (await store.get_many(["counter"])).get("counter")
                try:
                    await store.transact(
                        {"counter": b"%d" % (int(cur.value) + 1 if cur else 1),
                         "child-%d" % i: b"x"},
                        expect={"counter": cur.version if cur else 0},
                    )
                    break
                except ConflictError:
                    continue
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def _increment(store: SqliteStore, n: int) -> int:
    conflicts = 0
    for i in range(n):
        while True:
            cur = (await store.get_many(["counter"])).get("counter")
            try:
                await store.transact(
                    {"counter": b"%d" % (int(cur.value) + 1 if cur else 1), f"parent-{i}": b"x"},
                    expect={"counter": cur.version if cur else 0},
                )
                break
            except ConflictError:
                conflicts += 1
    return conflicts


async def test_two_processes_share_one_file_without_losing_an_update(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    n = 150
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _INCREMENTER,
        str(path),
        str(n),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    store = await SqliteStore.open(SqliteConfig(path))
    try:
        async with asyncio.timeout(30):
            assert await proc.stdout.readline() == b"ready\n"
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            await _increment(store, n)
            assert await proc.wait() == 0
        got = await store.get_many(["counter"])
        assert got["counter"].value == b"%d" % (2 * n)
        assert len(await store.scan_prefix("child-")) == n
        assert len(await store.scan_prefix("parent-")) == n
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await store.close()


async def test_state_survives_reopening(tmp_path: Path) -> None:
    config = SqliteConfig(tmp_path / "state.db")
    store = await SqliteStore.open(config)
    rev = await store.transact({"k": b"v"})
    await store.close()
    store = await SqliteStore.open(config)
    try:
        assert (await store.get_many(["k"]))["k"].version == rev
        assert await store.transact({"k2": b"v"}) > rev  # the revision counter persisted
    finally:
        await store.close()


async def test_queued_transactions_commit_in_order_and_conflict_alone(tmp_path: Path) -> None:
    """Many transactions queued at once go through the group commit: each one sees the
    ones before it, and one that conflicts fails without taking the batch down."""
    store = await SqliteStore.open(SqliteConfig(tmp_path / "state.db"))
    try:
        calls = [store.transact({"m": b"first"}, expect={"m": 0})]
        calls += [store.transact({f"k{i}": b"v"}) for i in range(50)]
        calls.append(store.transact({"m": b"second"}, expect={"m": 0}))  # m exists by now
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[-1], ConflictError)
        revisions = results[:-1]
        assert all(isinstance(r, int) for r in revisions)
        assert len(set(revisions)) == len(revisions)
        assert (await store.get_many(["m"]))["m"].value == b"first"
        assert len(await store.scan_prefix("k")) == 50
    finally:
        await store.close()


async def test_under_load_single_writes_share_commits(tmp_path: Path) -> None:
    """Writes that arrive one at a time, a little apart, while the writer is busy (its
    last commit held several jobs) share commits instead of paying one fsync each; one
    caller writing in turn is never kept waiting."""
    config = SqliteConfig(
        tmp_path / "state.db", linger_s=1.0, linger_after_s=60.0, linger_until_jobs=4
    )
    store = await SqliteStore.open(config)
    try:
        before = store.commits
        for i in range(5):  # one caller in turn: a commit each, and no 1 s lingering
            await asyncio.wait_for(store.transact({f"seq{i}": b"v"}), 0.9)
        assert store.commits - before == 5
        # Several at once: one commit of several jobs, so the writer is busy now.
        await asyncio.gather(*(store.transact({f"warm{i}": b"v"}) for i in range(4)))

        async def later(i: int) -> int:
            await asyncio.sleep(0.001 * i)
            return await store.transact({f"k{i}": b"v"})

        before = store.commits
        revisions = await asyncio.wait_for(asyncio.gather(*(later(i) for i in range(20))), 30)
        assert len(set(revisions)) == 20
        assert store.commits - before <= 6  # 4 per commit at most here, so at least 5
        assert len(await store.scan_prefix("k")) == 20
    finally:
        await store.close()


async def test_background_writes_riding_along_do_not_make_the_next_write_linger(
    tmp_path: Path,
) -> None:
    """One caller writing in turn, its commits joined by background writes (a workflow's
    checkpoint takes its activity's saved outcome along): the writer is not busy, and
    the caller's next write is not held for company."""
    config = SqliteConfig(
        tmp_path / "state.db", linger_s=1.0, linger_after_s=60.0, background_linger_s=60.0
    )
    store = await SqliteStore.open(config)
    try:
        for i in range(3):
            before = store.commits
            # Handed over together: one commit of a checkpoint and an outcome riding along.
            held = asyncio.ensure_future(store.transact({f"outcome{i}": b"v"}, background=True))
            await asyncio.wait_for(store.transact({f"checkpoint{i}": b"v"}), 0.9)
            await asyncio.wait_for(held, 0.9)
            assert store.commits - before == 1  # together
    finally:
        await store.close()


async def test_background_writes_wait_to_share_one_commit(tmp_path: Path) -> None:
    """Background writes (an activity's saved outcome) arriving 2 ms apart wait
    for each other and share one commit, up to `background_until_jobs`."""
    config = SqliteConfig(tmp_path / "state.db", background_linger_s=60.0, background_until_jobs=20)
    store = await SqliteStore.open(config)
    try:

        async def later(i: int) -> int:
            await asyncio.sleep(0.002 * i)  # apart: each would get a commit of its own
            return await store.transact({f"k{i}": b"v"}, background=True)

        before = store.commits
        revisions = await asyncio.wait_for(asyncio.gather(*(later(i) for i in range(20))), 30)
        assert len(set(revisions)) == 20
        assert store.commits - before == 1, store.commits - before
        assert len(await store.scan_prefix("k")) == 20
    finally:
        await store.close()


async def test_a_foreground_write_takes_waiting_background_writes_along(tmp_path: Path) -> None:
    """A write someone waits on (a checkpoint) is committed at once, and the background
    writes held for company go in the same commit; alone, a background write waits at
    most `background_linger_s`."""
    config = SqliteConfig(tmp_path / "state.db", background_linger_s=60.0)
    store = await SqliteStore.open(config)
    try:
        before = store.commits
        held = asyncio.ensure_future(store.transact({"outcome": b"v"}, background=True))
        await asyncio.sleep(0.05)
        assert not held.done()  # waiting for company, for up to a minute
        await asyncio.wait_for(store.transact({"checkpoint": b"v"}, expect={"checkpoint": 0}), 10)
        await asyncio.wait_for(held, 10)
        assert store.commits - before == 1, store.commits - before
    finally:
        await store.close()
    quick = await SqliteStore.open(SqliteConfig(tmp_path / "other.db", background_linger_s=0.01))
    try:
        await asyncio.wait_for(quick.transact({"alone": b"v"}, background=True), 10)
    finally:
        await quick.close()


def test_linger_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="linger"):
        SqliteConfig(tmp_path / "state.db", linger_s=-1)
    with pytest.raises(StoreConfigError, match="linger"):
        SqliteConfig(tmp_path / "state.db", linger_until_jobs=0)
    with pytest.raises(StoreConfigError, match="background_linger_s"):
        SqliteConfig(tmp_path / "state.db", background_linger_s=-0.1)
    with pytest.raises(StoreConfigError, match="background_until_jobs"):
        SqliteConfig(tmp_path / "state.db", background_until_jobs=0)


async def test_cannot_open_a_file_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="cannot open"):
        await SqliteStore.open(SqliteConfig(tmp_path / "missing" / "state.db"))


def _revision_row(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (revision,) = conn.execute("SELECT revision FROM kv_revision").fetchone()
    return int(revision)


async def test_revisions_are_reserved_in_blocks_and_never_shared(tmp_path: Path) -> None:
    """Two writers on one file (as two sidecars): the revision row is written once per
    block, and no two transactions get the same revision, so a key deleted by one and
    created again by the other never gets back a version it had."""
    config = SqliteConfig(tmp_path / "state.db", revision_block=4)
    a, b = await SqliteStore.open(config), await SqliteStore.open(config)
    try:
        seen = [await a.transact({"k": b"a1"})]
        seen.append(await b.transact({"k": None}))
        seen.append(await b.transact({"k": b"b1"}))
        for i in range(7):
            seen.append(await (a if i % 2 else b).transact({f"x{i}": b"v"}))
        assert len(set(seen)) == len(seen)
        assert (await a.get_many(["k"]))["k"].version == seen[2] != seen[0]
        # 10 transactions, blocks of 4: a took one block, b took two.
        assert _revision_row(config.path) == 12
    finally:
        await a.close()
        await b.close()


async def test_a_failed_commit_drops_the_block_it_reserved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block is reserved inside a transaction; when that transaction rolls back the
    reservation is gone from the file, and another writer may take the same numbers:
    the failed writer must not hand them out."""
    config = SqliteConfig(tmp_path / "state.db", revision_block=4)
    a, b = await SqliteStore.open(config), await SqliteStore.open(config)
    apply = _Writer._apply
    failing = {"once": True}

    def fail_once(self: _Writer, conn: sqlite3.Connection, batch: list[Any]) -> None:
        apply(self, conn, batch)
        if failing.pop("once", False):
            raise sqlite3.OperationalError("disk I/O error (injected)")

    monkeypatch.setattr(_Writer, "_apply", fail_once)
    try:
        with pytest.raises(StoreUnavailableError):
            await a.transact({"k": b"lost"})
        from_b = [await b.transact({f"b{i}": b"v"}) for i in range(3)]
        from_a = await a.transact({"k": b"kept"})
        assert from_a not in from_b
        assert (await b.get_many(["k"]))["k"].version == from_a
    finally:
        await a.close()
        await b.close()


@given(st.integers(min_value=0, max_value=5000))
def test_rows_split_into_few_statement_shapes(count: int) -> None:
    sizes = list(_sizes(count))
    assert sum(sizes) == count
    assert all(0 < s <= _ROWS_PER_STATEMENT for s in sizes)
    # Whole statements first, then each power of two at most once: a few statements,
    # and never more shapes than the connection's statement cache keeps.
    rest = [s for s in sizes if s != _ROWS_PER_STATEMENT]
    assert len(rest) == len(set(rest)) and all(s & (s - 1) == 0 for s in rest)
    assert sizes[: len(sizes) - len(rest)] == [_ROWS_PER_STATEMENT] * (count // _ROWS_PER_STATEMENT)


@pytest.mark.parametrize("puts,deletes", [(1, 0), (0, 1), (3, 2), (255, 257), (513, 300)])
async def test_many_puts_and_deletes_in_one_transaction(
    tmp_path: Path, puts: int, deletes: int
) -> None:
    """Rows go several to a statement: every put lands with the transaction's revision,
    every delete removes its row, and no other row is touched."""
    store = await SqliteStore.open(SqliteConfig(tmp_path / "state.db"))
    try:
        await store.transact({f"old-{i:04d}": b"o%d" % i for i in range(deletes + 5)})
        writes: dict[str, bytes | None] = {f"old-{i:04d}": None for i in range(deletes)}
        writes |= {f"new-{i:04d}": b"n%d" % i for i in range(puts)}
        revision = await store.transact(writes)
        rows = dict(await store.scan_prefix(""))
        assert sorted(rows) == sorted(
            [f"new-{i:04d}" for i in range(puts)]
            + [f"old-{i:04d}" for i in range(deletes, deletes + 5)]
        )
        assert all(rows[f"new-{i:04d}"] == Versioned(b"n%d" % i, revision) for i in range(puts))
        assert rows[f"old-{deletes:04d}"].value == b"o%d" % deletes
    finally:
        await store.close()
