"""Ring lookup and build speed (placement/ring.py), as plain callables.

Lookups use distinct, random-looking actor ids: the ring keeps no cache, so the figure is
the cost of hashing and probing every time. `cached=True` puts a dict in front, as a
caller that sees the same ids again might, to show what such a cache is worth.
"""

from __future__ import annotations

import time
from hashlib import blake2b

from placement.ring import HashRing

__all__ = ["measure_build_ms", "measure_lookups"]

_POOL = 200_000
_WINDOW = 20_000


def _hosts(count: int) -> list[str]:
    return [f"sidecar-{i:04d}.actors.svc:50002" for i in range(count)]


def _actor_ids(count: int) -> list[str]:
    return [blake2b(i.to_bytes(8, "big"), digest_size=12).hexdigest() for i in range(count)]


def measure_lookups(seconds: float, *, hosts: int = 100, cached: bool = False) -> float:
    """Lookups per second on a ring of `hosts` hosts with the default vnodes.

    Runs windows of `_WINDOW` lookups for at least `seconds` and returns the best window,
    as `timeit` advises: other processes on the machine only ever slow a window down.
    The id pool is built (and, with `cached`, the cache warmed) before timing."""
    ring = HashRing(_hosts(hosts))
    ids = _actor_ids(_POOL)
    lookup = ring.lookup
    if cached:
        memo: dict[str, str] = {}

        def lookup(actor_id: str) -> str:
            owner = memo.get(actor_id)
            if owner is None:
                owner = memo[actor_id] = ring.lookup(actor_id)
            return owner

        for actor_id in ids:
            lookup(actor_id)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        for start in range(0, _POOL, _WINDOW):
            window = ids[start : start + _WINDOW]
            began = time.perf_counter()
            for actor_id in window:
                lookup(actor_id)
            ended = time.perf_counter()
            best = max(best, len(window) / (ended - began))
            if ended >= deadline:
                return best


def measure_build_ms(hosts: int, *, repeats: int = 3) -> float:
    """The best of `repeats` times to build a ring of `hosts` hosts, in milliseconds."""
    names = _hosts(hosts)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        HashRing(names)
        best = min(best, time.perf_counter() - start)
    return best * 1e3
