"""`check_transaction`: the limits every store applies, checked against their definition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.store import TransactionTooLargeError
from sidecar.store.base import StoreLimits, check_transaction, write_bytes


def _view(data: bytes) -> memoryview:
    return memoryview(data)


_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.binary(max_size=40).map(_view),
)


@given(
    writes=st.dictionaries(st.text(min_size=1, max_size=12), _VALUES, max_size=12),
    max_bytes=st.integers(min_value=1, max_value=400),
    op_bytes=st.sampled_from([0, 20]),
)
def test_the_size_limit_is_the_utf8_size_of_keys_and_values(
    writes: dict[str, bytes | None], max_bytes: int, op_bytes: int
) -> None:
    """Non-ASCII keys count their UTF-8 bytes, values their length, deletes their key,
    and each write the store's framing (`op_bytes`)."""
    limits = StoreLimits(max_ops=100, max_bytes=max_bytes, op_bytes=op_bytes)
    if write_bytes(writes, op_bytes) > max_bytes:
        with pytest.raises(TransactionTooLargeError):
            check_transaction(writes, {}, limits)
    else:
        check_transaction(writes, {}, limits)


def test_bad_writes_are_refused_before_any_io() -> None:
    limits = StoreLimits(max_ops=10, max_bytes=1000)
    with pytest.raises(ValueError, match="empty"):
        check_transaction({"": b"v"}, {}, limits)
    with pytest.raises(TypeError, match="must be bytes"):
        check_transaction({"k": "text"}, {}, limits)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=">= 0"):
        check_transaction({}, {"k": -1}, limits)
