"""Seeded random protobuf messages with edge values, for the sweep and fuzz tests.

`fill(msg, rnd)` sets a random choice of a message's fields, nested messages too (two
levels deep), to values that break careless code: empty and very long strings, NUL,
non-ASCII, the extremes of every integer type, an enum number no enum names, and
Timestamps before year 1 and after year 9999.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["INTS", "STRINGS", "fill"]

STRINGS = ["", "a", "fan", "waits", "dapr", "a||b", "a::1", "x" * 300, "é", "\x00", " ", "{}",
           "null", "%", "sweep-1"]  # fmt: skip
INTS = [0, 1, -1, 2**31 - 1, -(2**31)]
WELL_KNOWN = "google.protobuf."
MAX_DEPTH = 2

_F = FieldDescriptor
_CHOICES: dict[int, list[Any]] = {
    _F.TYPE_STRING: STRINGS,
    _F.TYPE_BOOL: [True, False],
    _F.TYPE_BYTES: [b"", b"\xff", b"x" * 100],
    _F.TYPE_DOUBLE: [0.0, -1.0, 1e300],
    _F.TYPE_FLOAT: [0.0, -1.0, 1e30],
    _F.TYPE_UINT32: [0, 1, 2**32 - 1],
    _F.TYPE_FIXED32: [0, 1, 2**32 - 1],
    _F.TYPE_UINT64: [0, 1, 2**64 - 1],
    _F.TYPE_FIXED64: [0, 1, 2**64 - 1],
}


def _scalar(field: Any, rnd: random.Random) -> Any:
    if field.enum_type is not None:
        return rnd.choice([v.number for v in field.enum_type.values] + [99])
    return rnd.choice(_CHOICES.get(field.type, INTS))


def fill(msg: Message, rnd: random.Random, depth: int = 0, share: float = 0.4) -> Message:
    """Sets about `share` of `msg`'s fields to edge values, nested messages too; returns
    `msg`."""
    for field in msg.DESCRIPTOR.fields:
        if rnd.random() < share:
            _fill_field(msg, field, rnd, depth)
    return msg


def _fill_field(msg: Message, field: Any, rnd: random.Random, depth: int) -> None:
    value = getattr(msg, field.name)
    kind = field.message_type
    if kind is None:
        if field.is_repeated:
            value.extend(_scalar(field, rnd) for _ in range(rnd.randint(0, 2)))
        else:
            setattr(msg, field.name, _scalar(field, rnd))
    elif kind.GetOptions().map_entry:
        for _ in range(rnd.randint(0, 2)):
            value[rnd.choice(STRINGS)] = rnd.choice(STRINGS)
    elif field.is_repeated:
        for _ in range(rnd.randint(0, 2) if depth < MAX_DEPTH else 0):
            fill(value.add(), rnd, depth + 1)
    elif kind.full_name.startswith(WELL_KNOWN):
        _fill_well_known(value, kind.full_name, rnd)
    elif depth < MAX_DEPTH:
        fill(value, rnd, depth + 1)


def _fill_well_known(value: Any, name: str, rnd: random.Random) -> None:
    if name == WELL_KNOWN + "Timestamp":  # years past 9999 and before 1 among them
        value.seconds = rnd.choice([0, -1, 2**40, -(2**40), 1_700_000_000])
    elif name == WELL_KNOWN + "StringValue":
        value.value = rnd.choice(STRINGS)
    else:
        value.SetInParent()
