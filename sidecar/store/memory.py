"""`MemoryStore`: the in-process state store for tests, with the same semantics as the
real ones (one global revision counter, as etcd has, so versions never repeat for a key).

Every method completes without awaiting anything, so on one event loop each call is
atomic; the store is not thread-safe.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sidecar.store.base import (
    NO_EXPECT,
    ConflictError,
    StoreLimits,
    StoreUnavailableError,
    Versioned,
    check_transaction,
    prefix_upper_bound,
)

__all__ = ["MemoryConfig", "MemoryStore"]


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    max_txn_ops: int = 1_000_000
    max_txn_bytes: int = 1 << 30


class MemoryStore:
    def __init__(self, config: MemoryConfig | None = None) -> None:
        config = config or MemoryConfig()
        self._limits = StoreLimits(config.max_txn_ops, config.max_txn_bytes)
        self._data: dict[str, Versioned] = {}
        self._sorted: list[str] = []  # INVARIANT: sorted(self._data)
        self._revision = 0
        self._closed = False

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError("memory store is closed")

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        self._check_open()
        data = self._data
        return {k: data[k] for k in keys if k in data}

    async def scan_prefix(
        self, prefix: str, *, limit: int | None = None
    ) -> list[tuple[str, Versioned]]:
        self._check_open()
        start = bisect.bisect_left(self._sorted, prefix)
        upper = prefix_upper_bound(prefix)
        stop = len(self._sorted) if upper is None else bisect.bisect_left(self._sorted, upper)
        if limit is not None:
            stop = min(stop, start + limit)
        return [(k, self._data[k]) for k in self._sorted[start:stop]]

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        self._check_open()
        check_transaction(writes, expect, self._limits)
        for key, expected in expect.items():
            current = self._data.get(key)
            actual = current.version if current is not None else 0
            if actual != expected:
                raise ConflictError(key, expected, actual)
        if not writes:
            return 0
        self._revision += 1
        revision = self._revision
        for key, value in writes.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._sorted[bisect.bisect_left(self._sorted, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._sorted, key)
                self._data[key] = Versioned(bytes(value), revision)
        return revision

    async def close(self) -> None:
        self._closed = True
