"""The state store contract (sidecar/store/__init__.py), run against every store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sidecar.store import (
    ConflictError,
    StateStore,
    StoreUnavailableError,
    TransactionTooLargeError,
    Versioned,
)

STORE_KINDS = ["memory", "sqlite", "etcd"]
OpenKind = Callable[..., Awaitable[StateStore]]


async def test_get_many_omits_absent_keys(store: StateStore, ns: str) -> None:
    rev = await store.transact({ns + "a": b"1", ns + "b": b""})
    got = await store.get_many([ns + "a", ns + "b", ns + "missing", ns + "a"])
    assert got == {ns + "a": Versioned(b"1", rev), ns + "b": Versioned(b"", rev)}
    assert await store.get_many([]) == {}


async def test_transact_returns_the_version_every_put_key_holds(store: StateStore, ns: str) -> None:
    first = await store.transact({ns + "x": b"\x00\xff binary"})
    assert first > 0
    second = await store.transact({ns + "x": b"again", ns + "y": b"new"})
    assert second != first
    got = await store.get_many([ns + "x", ns + "y"])
    assert got[ns + "x"] == Versioned(b"again", second)
    assert got[ns + "y"].version == second


async def test_background_writes_are_ordinary_transactions(store: StateStore, ns: str) -> None:
    """A background write is as atomic, versioned and ordered as any other; it may only
    wait longer for its commit. A foreground write issued after it sees it."""
    background = asyncio.ensure_future(
        store.transact({ns + "outcome": b"done", ns + "gone": None}, background=True)
    )
    await asyncio.sleep(0)  # handed over first
    foreground = await asyncio.wait_for(store.transact({ns + "turn": b"t"}), 10)
    revision = await asyncio.wait_for(background, 10)
    assert revision > 0 and revision != foreground
    got = await store.get_many([ns + "outcome", ns + "turn", ns + "gone"])
    assert got == {
        ns + "outcome": Versioned(b"done", revision),
        ns + "turn": Versioned(b"t", foreground),
    }
    with pytest.raises(ConflictError):
        await store.transact({ns + "outcome": b"x"}, expect={ns + "outcome": 0}, background=True)
    assert (await store.get_many([ns + "outcome"]))[ns + "outcome"].value == b"done"


async def test_delete_and_recreate_never_reuses_a_version(store: StateStore, ns: str) -> None:
    key = ns + "k"
    seen = {await store.transact({key: b"v1"})}
    await store.transact({key: None})
    assert await store.get_many([key]) == {}
    again = await store.transact({key: b"v1"}, expect={key: 0})
    assert again not in seen
    # A stale reader that saw the first incarnation must not win.
    with pytest.raises(ConflictError):
        await store.transact({key: b"stale"}, expect={key: min(seen)})


async def test_delete_of_an_absent_key_is_harmless(store: StateStore, ns: str) -> None:
    await store.transact({ns + "never": None, ns + "other": b"1"})
    assert list(await store.get_many([ns + "never", ns + "other"])) == [ns + "other"]


async def test_expect_zero_means_absent(store: StateStore, ns: str) -> None:
    key = ns + "meta"
    rev = await store.transact({key: b"created"}, expect={key: 0})
    with pytest.raises(ConflictError) as info:
        await store.transact({key: b"twice"}, expect={key: 0})
    assert (info.value.key, info.value.expected, info.value.actual) == (key, 0, rev)


async def test_conflict_writes_nothing(store: StateStore, ns: str) -> None:
    meta = ns + "metadata"
    rev = await store.transact({meta: b"g1"})
    writes: dict[str, bytes | None] = {ns + "history-000001": b"e", meta: b"g2"}
    with pytest.raises(ConflictError) as info:
        await store.transact(writes, expect={meta: rev + 1000})
    assert info.value.actual == rev
    got = await store.get_many([ns + "history-000001", meta])
    assert got == {meta: Versioned(b"g1", rev)}


async def test_every_expectation_must_hold(store: StateStore, ns: str) -> None:
    a = await store.transact({ns + "a": b"1"})
    with pytest.raises(ConflictError) as info:
        await store.transact({ns + "c": b"3"}, expect={ns + "a": a, ns + "b": 7})
    assert (info.value.key, info.value.actual) == (ns + "b", 0)
    assert await store.get_many([ns + "c"]) == {}
    rev = await store.transact({ns + "c": b"3"}, expect={ns + "a": a, ns + "b": 0})
    assert (await store.get_many([ns + "c"]))[ns + "c"].version == rev


async def test_a_pure_check_writes_nothing(store: StateStore, ns: str) -> None:
    rev = await store.transact({ns + "a": b"1"})
    assert await store.transact({}, expect={ns + "a": rev}) == 0
    with pytest.raises(ConflictError):
        await store.transact({}, expect={ns + "a": 0})
    assert (await store.get_many([ns + "a"]))[ns + "a"].version == rev


async def test_scan_prefix_is_sorted_bounded_and_limited(store: StateStore, ns: str) -> None:
    keys = [f"{ns}app||wf||{i}||h" for i in ("b", "a", "é", "c", "a0")]
    await store.transact(dict.fromkeys(keys, b"v"))
    await store.transact({f"{ns}app||wf|": b"outside", f"{ns}app||wf}}": b"outside"})
    scanned = await store.scan_prefix(f"{ns}app||wf||")
    assert [k for k, _ in scanned] == sorted(keys)
    limited = await store.scan_prefix(f"{ns}app||wf||", limit=2)
    assert [k for k, _ in limited] == sorted(keys)[:2]
    assert await store.scan_prefix(f"{ns}nothing||") == []
    assert await store.scan_prefix(f"{ns}app||wf||", limit=0) == []


async def test_scan_prefix_pages_through_many_keys(store: StateStore, ns: str) -> None:
    # More than one etcd page (1000 keys) and more than etcd's default txn size.
    keys = [f"{ns}h-{i:06d}" for i in range(2500)]
    for i in range(0, len(keys), 100):
        await store.transact(dict.fromkeys(keys[i : i + 100], b"e" * 10))
    scanned = await store.scan_prefix(ns + "h-")
    assert [k for k, _ in scanned] == keys
    got = await store.get_many(keys)
    assert len(got) == len(keys)


async def test_a_checkpoint_of_1000_events_is_one_transaction(store: StateStore, ns: str) -> None:
    writes: dict[str, bytes | None] = {f"{ns}history-{i:06d}": b"e" * 200 for i in range(1000)}
    writes[ns + "metadata"] = b"len=1000"
    rev = await store.transact(writes, expect={ns + "metadata": 0})
    scanned = await store.scan_prefix(ns)
    assert len(scanned) == 1001
    assert {v.version for _, v in scanned} == {rev}


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_too_large_transactions_are_refused_whole(
    kind: str, open_kind: OpenKind, tmp_path: Path, ns: str
) -> None:
    store = await open_kind(kind, tmp_path, max_txn_ops=8, max_txn_bytes=1000)
    try:
        assert (store.limits.max_ops, store.limits.max_bytes) == (8, 1000)
        with pytest.raises(TransactionTooLargeError, match="at most 8"):
            await store.transact({f"{ns}{i}": b"x" for i in range(9)})
        with pytest.raises(TransactionTooLargeError, match="at most 1000"):
            await store.transact({ns + "big": b"x" * 1000})
        assert await store.scan_prefix(ns) == []
        await store.transact({f"{ns}{i}": b"x" for i in range(8)})
    finally:
        await store.close()


async def test_two_conflicting_transactions_exactly_one_wins(store: StateStore, ns: str) -> None:
    meta = ns + "metadata"
    rev = await store.transact({meta: b"turn-0"})

    async def turn(name: str) -> str:
        await store.transact({meta: name.encode(), ns + name: b"h"}, expect={meta: rev})
        return name

    results = await asyncio.gather(turn("left"), turn("right"), return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, results
    got = await store.get_many([meta, ns + "left", ns + "right"])
    assert got[meta].value == winners[0].encode()
    assert set(got) == {meta, ns + winners[0]}


async def test_concurrent_increments_lose_no_update(store: StateStore, ns: str) -> None:
    counter = ns + "counter"

    async def increment() -> None:
        while True:
            current = (await store.get_many([counter])).get(counter)
            value = int(current.value) if current else 0
            version = current.version if current else 0
            try:
                await store.transact({counter: b"%d" % (value + 1)}, expect={counter: version})
                return
            except ConflictError:
                continue

    await asyncio.gather(*(increment() for _ in range(20)))
    assert (await store.get_many([counter]))[counter].value == b"20"


async def test_closed_store_refuses_calls(open_kind: OpenKind, tmp_path: Path, ns: str) -> None:
    for kind in STORE_KINDS:
        (tmp_path / kind).mkdir()
        store = await open_kind(kind, tmp_path / kind)
        await store.close()
        with pytest.raises(StoreUnavailableError):
            await store.transact({ns + "k": b"v"})
        await store.close()  # idempotent


async def test_bad_arguments_are_refused(store: StateStore, ns: str) -> None:
    with pytest.raises(ValueError):
        await store.transact({"": b"v"})
    with pytest.raises(ValueError):
        await store.transact({ns + "k": b"v"}, expect={ns + "k": -1})
