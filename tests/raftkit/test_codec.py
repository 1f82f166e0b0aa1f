"""msgpack commands, snapshots and dumps; the HMAC frame sealer."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkit import CodecError, Command, decode_command, decode_snapshot, encode_command
from raftkit.auth import HmacSealer, InvalidTokenError
from raftkit.codec import Dump, decode_dump, encode_dump, encode_snapshot

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(kind=st.text(min_size=1), body=_values, fence=st.none() | st.integers(0, 2**40))
def test_command_round_trip(kind: str, body: Any, fence: int | None) -> None:
    command = Command(kind, body, fence_term=fence)
    assert decode_command(encode_command(command)) == command


def test_command_is_a_versioned_msgpack_map() -> None:
    raw = msgpack.unpackb(encode_command(Command("put", {"now_ms": 5})))
    assert raw == {"v": 1, "k": "put", "b": {"now_ms": 5}}


def test_unknown_envelope_keys_are_ignored() -> None:
    data = msgpack.packb({"v": 1, "k": "put", "b": 1, "future": True})
    assert decode_command(data) == Command("put", 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"k": "put"}),
        msgpack.packb({"v": 2, "k": "put"}),
        msgpack.packb({"v": True, "k": "put"}),
        msgpack.packb({"v": 1}),
        msgpack.packb({"v": 1, "k": ""}),
        msgpack.packb({"v": 1, "k": "put", "f": "x"}),
        msgpack.packb({"v": 1, "k": "put"}) + b"trailing",
    ],
)
def test_bad_commands_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_command(data)


def test_unencodable_body_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_command(Command("put", {1, 2}))


@given(state=_values)
def test_snapshot_round_trip(state: Any) -> None:
    assert decode_snapshot(encode_snapshot(state)) == state


def test_dump_round_trip() -> None:
    dump = Dump(
        last=(b"\x00last", 41, 3),
        prev=(b"\x00prev", 40, 3),
        cluster=("127.0.0.1:1", "127.0.0.1:2"),
        state=encode_snapshot({"k": [1, 2]}),
    )
    assert decode_dump(encode_dump(dump)) == dump
    with pytest.raises(CodecError):
        decode_dump(msgpack.packb({"v": 1, "last": [1, 2]}))


def test_sealer_authenticates_frames() -> None:
    sealer = HmacSealer("secret")
    token = sealer.encrypt_at_time(b"payload", 1234)
    assert sealer.extract_timestamp(token) == 1234
    assert sealer.decrypt(token) == b"payload"
    tampered = token[:10] + bytes([token[10] ^ 1]) + token[11:]
    for bad in (tampered, token[:-1], b"", HmacSealer("other").encrypt_at_time(b"payload", 1)):
        with pytest.raises(InvalidTokenError):
            sealer.decrypt(bad)
        with pytest.raises(InvalidTokenError):
            sealer.extract_timestamp(bad)
