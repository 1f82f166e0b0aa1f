"""API input checks: every refused key names the part and the problem."""

from __future__ import annotations

import pytest

from reminders import convert
from reminders.api.v1 import reminders_pb2 as pb
from reminders.errors import InvalidReminderError
from reminders.machine import ReminderTable, StoredList, create_item
from reminders.schedule import ScheduleState

PARTS = ("namespace", "app_id", "actor_type", "actor_id", "name")
NOW = 1_700_000_000_000


def _key(**override: str) -> pb.ReminderKey:
    fields = dict(zip(PARTS, ("ns", "app", "T", "a1", "r"), strict=True))
    fields.update(override)
    return pb.ReminderKey(**fields)


def test_a_valid_key_comes_back_as_its_parts() -> None:
    assert convert.validate_key(_key(), 8) == ("ns", "app", "T", "a1", "r")
    assert convert.validate_key(_key(actor_id="é" * 8), 8)[3] == "é" * 8  # characters


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "must not be empty"), ("x" * 9, "longer than 8"), ("a\nb", "control characters")],
)
def test_each_bad_part_is_named(part: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidReminderError) as err:
        convert.validate_key(_key(**{part: value}), 8, "reminders[3].key")
    assert err.value.field == f"reminders[3].key.{part}"
    assert problem in err.value.message


def test_the_first_bad_part_is_the_one_named() -> None:
    with pytest.raises(InvalidReminderError) as err:
        convert.validate_key(_key(app_id="", name="\x7f"), 8)
    assert err.value.field == "key.app_id"


def test_a_reply_row_carries_every_field() -> None:
    request = pb.CreateReminderRequest(
        key=_key(), due_time="5s", period="R3/PT1S", ttl="1h", data=b"payload"
    )
    key, item = convert.plan_create(request, NOW, max_data_bytes=64, max_key_part_length=64)
    table = ReminderTable()
    table.apply("create", {"now_ms": NOW, "items": [item]})
    stored = table.get(key)
    assert stored is not None
    reply = convert.row_to_proto(key, stored.row())
    assert reply == convert.stored_to_proto(stored)
    assert (reply.key.actor_id, reply.due_time, reply.period, reply.ttl, reply.data) == (
        "a1", "5s", "R3/PT1S", "1h", b"payload",
    )  # fmt: skip
    assert (reply.next_due_ms, reply.remaining, reply.created_ms) == (NOW + 5000, 3, NOW)
    assert reply.expires_ms == NOW + 3_600_000
    one_shot = create_item(
        ("ns", "app", "T", "a2", "r"), due_time="1s", period="", ttl="", data=b"",
        schedule=ScheduleState(NOW + 1000, 1, None, None),
    )  # fmt: skip
    created, _ = table.apply("create", {"now_ms": NOW, "items": [one_shot]})
    assert isinstance(created, StoredList)
    ((key2, row2),) = created.pairs()
    reply2 = convert.row_to_proto(key2, row2)
    assert (reply2.remaining, reply2.expires_ms) == (1, 0)
