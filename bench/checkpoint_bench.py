"""`actorflow bench checkpoint`: the state store cost of one orchestrator turn.

For each store (`--stores sqlite,etcd`) and each batch size k (`--events 1,10,100,1000`),
one workflow instance checkpoints at least `--iterations` times and for at least
`--min-seconds` (2 s: this machine runs at half speed for stretches of ~100 ms, and 200
checkpoints of k = 1 take about 0.1 s, so one such stretch could decide a whole figure;
`samples` in the JSON says how many were taken): a `transact` of k new history
keys (`app||dapr.internal.default.app.workflow||wf-k||history-NNNNNN`, ~200 bytes each)
plus its `metadata` key, with an `expect` on the metadata's current version, exactly the
shape the engine writes. Interleaved with each checkpoint (alternating which goes first)
the same rows go through a raw transaction on the same store:
- sqlite: plain `sqlite3` on the same database file (a table of the same schema),
  `BEGIN IMMEDIATE; executemany(INSERT OR REPLACE); COMMIT`, synchronous=FULL like the
  store, called directly on the bench thread; `raw_thread_p50_ms` is the same from a
  worker thread, which is what any caller that must not block its event loop pays;
- etcd: the bare `aetcd` client, one Txn of the same puts, on the same etcd.
`ratio_p50` = checkpoint p50 / raw p50; the target is <= 1.5 for every k.

etcd is started by the bench (one member on loopback ports, data in a temporary
directory) with `--max-txn-ops 4096`: etcd's default of 128 operations per Txn cannot
carry k = 1000. The event loop is uvloop, as in the sidecar (`--loop asyncio` to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import add_common_args, emit, now_iso, percentile, result
from sidecar.store import EtcdStore, MemoryStore, SqliteConfig, SqliteStore, StateStore
from sidecar.store.testing import EtcdCluster, etcd_binary

__all__ = ["main"]

ACTOR_TYPE = "dapr.internal.default.app.workflow"
EVENT_BYTES = 200
TARGET_RATIO = 1.5


@dataclass
class Turns:
    """The checkpoints of one workflow instance: turn i adds history keys i*k .. i*k+k-1."""

    instance: str
    k: int
    turn: int = 0

    def next(self) -> dict[str, bytes | None]:
        base = f"app||{ACTOR_TYPE}||{self.instance}||"
        first = self.turn * self.k
        self.turn += 1
        rows: dict[str, bytes | None] = {
            f"{base}history-{first + j:06d}": (b"%06d" % (first + j)) + b"e" * (EVENT_BYTES - 6)
            for j in range(self.k)
        }
        rows[f"{base}metadata"] = b"generation=1;history=%d" % (first + self.k)
        return rows

    @property
    def metadata_key(self) -> str:
        return f"app||{ACTOR_TYPE}||{self.instance}||metadata"


RawTxn = Callable[[dict[str, bytes | None]], Awaitable[None]]


async def _measure(
    store: StateStore,
    raw: RawTxn,
    k: int,
    iterations: int,
    *,
    warmup: int,
    min_seconds: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], list[float]]:
    """`warmup` unmeasured pairs, then measured pairs until there are `iterations` of
    them and `min_seconds` have passed since the first."""
    ours, theirs = Turns(f"wf-{k}", k), Turns(f"wf-{k}", k)
    version = 0
    checkpoint_ms: list[float] = []
    raw_ms: list[float] = []
    i = 0
    started: float | None = None
    while i < warmup + iterations or (started is not None and clock() - started < min_seconds):
        if i == warmup:
            started = clock()
        rows, raw_rows = ours.next(), theirs.next()
        for first in (i % 2 == 0, i % 2 == 1):
            if first:
                t0 = clock()
                version = await store.transact(rows, expect={ours.metadata_key: version})
                elapsed = (clock() - t0) * 1000
                if i >= warmup:
                    checkpoint_ms.append(elapsed)
            else:
                t0 = clock()
                await raw(raw_rows)
                elapsed = (clock() - t0) * 1000
                if i >= warmup:
                    raw_ms.append(elapsed)
        i += 1
    return checkpoint_ms, raw_ms


def _row(store: str, k: int, checkpoint: list[float], raw: list[float]) -> dict[str, Any]:
    raw_p50 = percentile(raw, 50)
    p50 = percentile(checkpoint, 50)
    return {
        "store": store,
        "events": k,
        "samples": len(checkpoint),
        "checkpoint_p50_ms": round(p50, 3),
        "checkpoint_p99_ms": round(percentile(checkpoint, 99), 3),
        "raw_p50_ms": round(raw_p50, 3),
        "raw_p99_ms": round(percentile(raw, 99), 3),
        "ratio_p50": round(p50 / raw_p50, 3) if raw_p50 else 0.0,
    }


@contextlib.contextmanager
def _raw_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_kv ("
        " key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID"
    )
    try:
        yield conn
    finally:
        conn.close()


def _raw_sqlite_txn(conn: sqlite3.Connection, rows: dict[str, bytes | None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT OR REPLACE INTO raw_kv (key, value, version) VALUES (?, ?, 1)",
        [(k, v) for k, v in rows.items()],
    )
    conn.execute("COMMIT")


async def _bench_sqlite(
    tmp: Path, events: list[int], iterations: int, min_seconds: float
) -> list[dict[str, Any]]:
    path = tmp / "checkpoint.db"
    store = await SqliteStore.open(SqliteConfig(path))
    out: list[dict[str, Any]] = []
    try:
        with _raw_sqlite(path) as conn:

            async def raw(rows: dict[str, bytes | None]) -> None:
                _raw_sqlite_txn(conn, rows)

            async def raw_thread(rows: dict[str, bytes | None]) -> None:
                await asyncio.to_thread(_raw_sqlite_txn, conn, rows)

            for k in events:
                checkpoint, raw_ms = await _measure(
                    store, raw, k, iterations, warmup=10, min_seconds=min_seconds
                )
                row = _row("sqlite", k, checkpoint, raw_ms)
                # The raw rows again from a worker thread (the memory store stands in for ours).
                _, thread_ms = await _measure(
                    MemoryStore(), raw_thread, k, max(20, iterations // 4), warmup=5
                )
                row["raw_thread_p50_ms"] = round(percentile(thread_ms, 50), 3)
                out.append(row)
    finally:
        await store.close()
    return out


async def _bench_etcd(
    tmp: Path, events: list[int], iterations: int, min_seconds: float
) -> list[dict[str, Any]]:
    import aetcd

    out: list[dict[str, Any]] = []
    async with EtcdCluster(tmp / "etcd", size=1) as cluster:
        store = await EtcdStore.open(cluster.store_config())
        host, port = cluster.endpoints[0].split(":")
        client = aetcd.Client(host, int(port))
        await client.connect()
        try:

            async def raw(rows: dict[str, bytes | None]) -> None:
                puts = [client.transactions.put(b"raw/" + k.encode(), v) for k, v in rows.items()]
                await client.transaction(compare=[], success=puts, failure=[])

            for k in events:
                checkpoint, raw_ms = await _measure(
                    store, raw, k, iterations, warmup=10, min_seconds=min_seconds
                )
                out.append(_row("etcd", k, checkpoint, raw_ms))
        finally:
            await client.close()
            await store.close()
    return out


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    batches: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-checkpoint-") as tmp:
        for store in args.stores:
            if store == "sqlite":
                batches += await _bench_sqlite(
                    Path(tmp), args.events, args.iterations, args.min_seconds
                )
            elif etcd_binary() is None:
                raise SystemExit("bench checkpoint: no etcd binary (apt install etcd-server)")
            else:
                batches += await _bench_etcd(
                    Path(tmp), args.events, args.iterations, args.min_seconds
                )
    return batches


def _print_table(batches: list[dict[str, Any]]) -> None:
    print(f"{'store':<7} {'k':>5} {'ckpt p50':>9} {'ckpt p99':>9} {'raw p50':>8} {'ratio':>6}")
    for b in batches:
        flag = "" if b["ratio_p50"] <= TARGET_RATIO else f"  (over the {TARGET_RATIO}x target)"
        print(
            f"{b['store']:<7} {b['events']:>5} {b['checkpoint_p50_ms']:>9.3f} "
            f"{b['checkpoint_p99_ms']:>9.3f} {b['raw_p50_ms']:>8.3f} {b['ratio_p50']:>6.2f}{flag}"
        )


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actorflow bench checkpoint", description=__doc__)
    parser.add_argument("--stores", type=_csv(str), default=["sqlite", "etcd"])
    parser.add_argument("--events", type=_csv(int), default=[1, 10, 100, 1000])
    parser.add_argument("--iterations", type=int, default=200, help="at least this many")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="and measure each batch size for at least this long (see the module docstring)",
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    add_common_args(parser)
    args = parser.parse_args(argv)
    unknown = set(args.stores) - {"sqlite", "etcd"}
    if unknown:
        parser.error(f"unknown stores: {sorted(unknown)} (choose from sqlite, etcd)")
    started = now_iso()
    if args.loop == "uvloop":
        import uvloop

        batches = uvloop.run(_run(args))
    else:
        batches = asyncio.run(_run(args))
    params = {
        "stores": ",".join(args.stores),
        "events": ",".join(map(str, args.events)),
        "iterations": args.iterations,
        "min_seconds": args.min_seconds,
        "loop": args.loop,
        "event_bytes": EVENT_BYTES,
        "etcd_max_txn_ops": 4096,
    }
    metrics = {
        "batches": batches,
        "target_ratio_p50": TARGET_RATIO,
        "within_target": all(b["ratio_p50"] <= TARGET_RATIO for b in batches),
    }
    if not args.quiet:
        _print_table(batches)
    emit(result("checkpoint", params, metrics, started), args.json, args.quiet, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
