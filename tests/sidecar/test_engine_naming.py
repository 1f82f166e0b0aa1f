"""The rules of `sidecar.engine.naming`: which instance ids every API takes, and which
rows under an instance's activity prefix are its own."""

from __future__ import annotations

import pytest

from sidecar.engine.naming import (
    MAX_INSTANCE_ID,
    activity_prefix,
    instance_id_problem,
    is_own_activity_key,
    name_problem,
)
from sidecar.workflow.effects import activity_actor_id


@pytest.mark.parametrize(
    "iid", ["a", "order 42/é", "wf:0001", "a::b", "x" * MAX_INSTANCE_ID, "émoji-✓"]
)
def test_printable_ids_up_to_the_limit_are_taken(iid: str) -> None:
    assert instance_id_problem(iid) is None


@pytest.mark.parametrize(
    ("iid", "why"),
    [
        ("", "required"),
        ("x" * (MAX_INSTANCE_ID + 1), "over 256 characters"),
        ("a||b", "'||'"),
        ("tab\there", "control or unprintable"),
        ("nul\x00", "control or unprintable"),
        ("line\nbreak", "control or unprintable"),
    ],
)
def test_other_ids_are_refused_with_the_reason(iid: str, why: str) -> None:
    problem = instance_id_problem(iid)
    assert problem is not None and why in problem


def test_own_activity_keys_are_told_from_a_longer_instance_ids() -> None:
    prefix = activity_prefix("app", "default", "a")
    own = f"app||dapr.internal.default.app.activity||{activity_actor_id('a', 3, 1)}||activityState"
    assert is_own_activity_key(prefix, own)
    for other_instance in ("a::7", "a::x", "a::7::1"):
        key = (
            f"app||dapr.internal.default.app.activity||"
            f"{activity_actor_id(other_instance, 3, 1)}||activityState"
        )
        assert key.startswith(prefix)
        assert not is_own_activity_key(prefix, key), other_instance
    assert not is_own_activity_key(prefix, "elsewhere||3::1||activityState")


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "name is required"), ("n" * 257, "invalid name"), ("a\tb", "invalid name"),
     ("x\u200b", "invalid name")],
)  # fmt: skip
def test_a_name_is_1_to_256_printable_characters(name: str, problem: str) -> None:
    assert problem in (name_problem("name", name) or "")


def test_a_usable_name_has_no_problem() -> None:
    assert name_problem("name", "n" * 256) is None
    assert name_problem("name", "Bestellung prüfen / ok?") is None
