"""Requests in, protobuf out: validation of API input and conversion of stored reminders.

Pure apart from protobuf: the caller passes `now_ms`. Every rejection is an
`InvalidReminderError` naming the request field ("key.actor_id", "data", "page_size",
"due_time", ...), which the gRPC edge maps to INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import re

from raftkit.codec import pack, unpack
from reminders.api.v1 import reminders_pb2 as pb
from reminders.errors import InvalidReminderError
from reminders.machine import CreateItem, Key, Row, Stored, create_item, key_from_wire
from reminders.schedule import plan

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_page_token",
    "encode_page_token",
    "key_to_proto",
    "plan_create",
    "row_to_proto",
    "stored_to_proto",
    "validate_key",
    "validate_name",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_KEY_PARTS = ("namespace", "app_id", "actor_type", "actor_id", "name")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _name_problem(value: str, max_length: int) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if _CONTROL.search(value) is not None:
        return "must not contain control characters"
    return None


def validate_name(value: str, field: str, max_length: int) -> str:
    problem = _name_problem(value, max_length)
    if problem is not None:
        raise InvalidReminderError(field, f"{field} {problem}")
    return value


def validate_key(key: pb.ReminderKey, max_length: int, prefix: str = "key") -> Key:
    # On the registration hot path: the five parts are checked together, and one by one
    # (to name the field) only when that fails.
    parts = (key.namespace, key.app_id, key.actor_type, key.actor_id, key.name)
    fits = all(parts) and max(map(len, parts)) <= max_length
    if fits and _CONTROL.search("".join(parts)) is None:
        return parts
    for part, value in zip(_KEY_PARTS, parts, strict=True):
        problem = _name_problem(value, max_length)
        if problem is not None:
            field = f"{prefix}.{part}"
            raise InvalidReminderError(field, f"{field} {problem}")
    return parts


def plan_create(
    request: pb.CreateReminderRequest,
    now_ms: int,
    *,
    max_data_bytes: int,
    max_key_part_length: int,
    prefix: str = "",
) -> tuple[Key, CreateItem]:
    """Validate one create and plan its schedule: the key and the `create` command item."""
    if not request.HasField("key"):
        raise InvalidReminderError(f"{prefix}key", f"{prefix}key is required")
    key = validate_key(request.key, max_key_part_length, f"{prefix}key")
    if len(request.data) > max_data_bytes:
        raise InvalidReminderError(
            f"{prefix}data", f"{prefix}data is larger than {max_data_bytes} bytes"
        )
    try:
        schedule = plan(request.due_time, request.period, request.ttl, now_ms)
    except InvalidReminderError as exc:
        if not prefix:
            raise
        raise InvalidReminderError(prefix + exc.field, f"{prefix.rstrip('.')}: {exc}") from None
    item = create_item(
        key,
        due_time=request.due_time,
        period=request.period,
        ttl=request.ttl,
        data=request.data,
        schedule=schedule,
    )
    return key, item


def key_to_proto(key: Key) -> pb.ReminderKey:
    ns, app, actor_type, actor_id, name = key
    return pb.ReminderKey(
        namespace=ns, app_id=app, actor_type=actor_type, actor_id=actor_id, name=name
    )


def stored_to_proto(stored: Stored) -> pb.Reminder:
    return row_to_proto(stored.key, stored.row())


def row_to_proto(key: Key, row: Row) -> pb.Reminder:
    """The reminder of a table row (`reminders.machine.Row`), as the API returns it."""
    due_time, period, ttl, data, created_ms, _, next_due_ms, remaining, _, expires_ms = row
    return pb.Reminder(
        key=key_to_proto(key),
        due_time=due_time,
        period=period,
        ttl=ttl,
        data=data,
        next_due_ms=next_due_ms,
        remaining=-1 if remaining is None else remaining,
        expires_ms=expires_ms or 0,
        created_ms=created_ms,
    )


def encode_page_token(last: Key) -> str:
    return base64.urlsafe_b64encode(pack(list(last))).decode("ascii")


def decode_page_token(token: str) -> Key | None:
    if not token:
        return None
    try:
        return key_from_wire(unpack(base64.urlsafe_b64decode(token.encode("ascii"))))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise InvalidReminderError(
            "continuation_token", "continuation_token is not one this service issued"
        ) from None
