"""The state store contract: `StateStore`, its values, limits and errors.

Pure: no I/O here. Every implementation checks a transaction with `check_transaction`
before touching its backend, so the limits and the argument rules are the same on all
of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = [
    "NO_EXPECT",
    "ConflictError",
    "StateStore",
    "StoreConfigError",
    "StoreError",
    "StoreLimits",
    "StoreUnavailableError",
    "TransactionOutcomeUnknownError",
    "TransactionTooLargeError",
    "Versioned",
    "check_transaction",
    "prefix_upper_bound",
    "write_bytes",
]


@dataclass(frozen=True, slots=True)
class Versioned:
    """A stored value and its version: an opaque int > 0 that changes on every write of
    the key (a delete and re-create included: versions never repeat for a key)."""

    value: bytes
    version: int


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """What one `transact` may carry, so the engine can plan chunked checkpoints.

    `max_ops` bounds the number of writes and, separately, the number of expected
    versions; `max_bytes` bounds the sum of the UTF-8 key lengths and value lengths of
    the writes plus `op_bytes` for each write (`write_bytes`): what the store's own
    encoding adds per write (etcd frames each op of a Txn: a few thousand small writes
    add more than a fixed margin allows). A store refuses a bigger transaction with
    `TransactionTooLargeError` before sending anything.
    """

    max_ops: int
    max_bytes: int
    op_bytes: int = 0

    def __post_init__(self) -> None:
        if self.max_ops < 1 or self.max_bytes < 1 or self.op_bytes < 0:
            raise StoreConfigError(f"store limits must be positive: {self}")


# The default for `expect`: an immutable empty mapping (a `{}` default would be shared).
NO_EXPECT: Mapping[str, int] = MappingProxyType({})


class StoreError(Exception):
    """Base of every state store error."""


class StoreConfigError(StoreError, ValueError):
    """A bad or contradictory store URL or configuration value."""


class ConflictError(StoreError):
    """An expected version did not hold; nothing was written.

    `actual` is the key's version when the transaction was evaluated (0 = absent).
    """

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"version conflict on {key!r}: expected {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class StoreUnavailableError(StoreError):
    """The backend could not be reached (every endpoint tried) or failed; nothing is
    known to have been written."""


class TransactionOutcomeUnknownError(StoreUnavailableError):
    """The transaction reached the backend but its outcome was lost (connection dropped,
    deadline passed): it may or may not have been applied. Reload and decide."""


class TransactionTooLargeError(StoreError):
    """The transaction exceeds the store's limits; nothing was written. Split it."""

    def __init__(self, message: str, *, ops: int, size: int, limits: StoreLimits) -> None:
        super().__init__(message)
        self.ops = ops
        self.size = size
        self.limits = limits


@runtime_checkable
class StateStore(Protocol):
    """Keys are str (DESIGN 3.4: `{appID}||{actorType}||{actorID}||{key}`), values bytes.

    INVARIANT: after `transact` returns revision r, every key it put holds version r.
    """

    @property
    def limits(self) -> StoreLimits: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        """The present keys among `keys`, read at one point in time; absent ones omitted."""
        ...

    async def scan_prefix(
        self, prefix: str, *, limit: int | None = None
    ) -> list[tuple[str, Versioned]]:
        """Keys starting with `prefix`, sorted by key (code point order = UTF-8 byte
        order), at most `limit` of them."""
        ...

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        """Apply all `writes` (None = delete) atomically, only if every key in `expect`
        has that version now (0 = absent); else raise `ConflictError` and write nothing.

        Returns the revision of the transaction: the version every put key now holds
        (0 when `writes` is empty: a pure version check).

        `background`: nobody's progress waits on this write (an activity's saved
        outcome, which travels to its workflow meanwhile), so the store may hold it a
        few milliseconds to share a commit with others. It is as atomic and, once the
        call returns, as durable as any other.
        """
        ...

    async def close(self) -> None: ...


def write_bytes(writes: Mapping[str, bytes | None], op_bytes: int = 0) -> int:
    """The size `StoreLimits.max_bytes` bounds: UTF-8 key bytes plus value bytes, plus
    `op_bytes` (`StoreLimits.op_bytes`) per write."""
    raw = sum(_key_bytes(k) + (len(v) if v is not None else 0) for k, v in writes.items())
    return raw + op_bytes * len(writes)


def _key_bytes(key: str) -> int:
    """UTF-8 length of `key`, without encoding it when it is ASCII (the usual case)."""
    return len(key) if key.isascii() else len(key.encode())


def check_transaction(
    writes: Mapping[str, bytes | None], expect: Mapping[str, int], limits: StoreLimits
) -> None:
    """Raise before any I/O if the transaction breaks the argument rules or the limits."""
    for key, version in expect.items():
        if version < 0:
            raise ValueError(f"expected version of {key!r} must be >= 0, got {version}")
    # One pass that checks each write and adds up `write_bytes` (on every checkpoint).
    size = 0
    for key, value in writes.items():
        if not key:
            raise ValueError("state store keys must not be empty")
        size += _key_bytes(key)
        if type(value) is bytes:
            size += len(value)
        elif value is not None:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"value of {key!r} must be bytes or None, not {type(value)}")
            size += len(value)
    size += limits.op_bytes * len(writes)
    ops = max(len(writes), len(expect))
    if ops > limits.max_ops:
        raise TransactionTooLargeError(
            f"transaction has {len(writes)} writes and {len(expect)} expected versions; "
            f"this store allows at most {limits.max_ops} of each: split it",
            ops=ops,
            size=size,
            limits=limits,
        )
    if size > limits.max_bytes:
        raise TransactionTooLargeError(
            f"transaction carries {size} bytes of keys and values (and per-write framing); "
            f"this store allows at most {limits.max_bytes}: split it",
            ops=ops,
            size=size,
            limits=limits,
        )


_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no
    bound). Code point order equals UTF-8 byte order, which SQLite's BINARY collation
    and etcd both use."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last in _SURROGATES:
            last = _SURROGATES.stop
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None
