"""Rows the engine keeps as msgpack maps with a format version (`v`): the workflow
metadata and the activity state. Pure."""

from __future__ import annotations

from typing import Any

import msgpack

from sidecar.workflow.errors import CorruptStateError


def pack_row(row: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(row, use_bin_type=True)
    return packed


def unpack_row(raw: bytes, version: int, what: str) -> dict[str, Any]:
    """The map stored in `raw`; CorruptStateError naming `what` when it is unreadable or
    of another format version."""
    try:
        row = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptStateError(f"unreadable {what}: {exc}") from exc
    if not isinstance(row, dict) or row.get("v") != version:
        raise CorruptStateError(f"{what} of an unknown format")
    return row
