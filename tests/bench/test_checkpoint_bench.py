"""`bench checkpoint`'s measuring loop: how many pairs it takes, and what it compares."""

from __future__ import annotations

import itertools

from bench.checkpoint_bench import _measure
from sidecar.store import MemoryStore


class _Clock:
    """Advances 1 ms each time it is read."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> float:
        return next(self._ticks) / 1000


async def test_at_least_the_iterations_and_the_minimum_time() -> None:
    raws: list[dict[str, bytes | None]] = []

    async def raw(rows: dict[str, bytes | None]) -> None:
        raws.append(rows)

    ours, theirs = await _measure(MemoryStore(), raw, 3, 5, warmup=2, clock=_Clock())
    assert (len(ours), len(theirs), len(raws)) == (5, 5, 7)  # warmup pairs not kept
    # Five clock reads per pair (two per timing, one for the loop's check): 0.25 s of
    # this clock takes about 50 measured pairs, ten times the iterations asked for.
    ours, theirs = await _measure(
        MemoryStore(), raw, 3, 5, warmup=2, min_seconds=0.25, clock=_Clock()
    )
    assert len(ours) == len(theirs) and 48 <= len(ours) <= 52
    # The raw side got the same shape: k history rows and the metadata row.
    assert all(len(rows) == 4 for rows in raws)


async def test_each_checkpoint_expects_the_version_the_last_one_wrote() -> None:
    """The store side is a real chain of turns: a wrong expected version would raise."""
    store = MemoryStore()

    async def raw(rows: dict[str, bytes | None]) -> None:
        return None

    ours, _ = await _measure(store, raw, 10, 20, warmup=1)
    assert len(ours) == 20
    rows = await store.scan_prefix("app||")
    assert len(rows) == 21 * 10 + 1  # every turn's history rows and one metadata row
