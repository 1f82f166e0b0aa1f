"""The names placement accepts for a host's name, app id and address: checked by the
placement nodes on every report, and by a sidecar on its own settings before it starts
(a sidecar placement refuses would otherwise run and never join)."""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_LENGTH", "NAME_CHARS", "is_valid_name"]

MAX_NAME_LENGTH = 256  # placement's default `max_name_length`
NAME_CHARS = "letters, digits and _ . : - [ ] @ /"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-\[\]@/]+$")


def is_valid_name(value: str, max_len: int = MAX_NAME_LENGTH) -> bool:
    return 0 < len(value) <= max_len and _NAME_RE.match(value) is not None
