from __future__ import annotations

from dataclasses import replace

import pytest

from placement.errors import InvalidCommandError
from placement.membership import (
    HostRecord,
    Membership,
    RemoveReason,
    apply,
    leader_command,
    remove_command,
    upsert_command,
)


def host(name: str, types: tuple[str, ...] = ("wf",), address: str = "") -> HostRecord:
    return HostRecord(name, address or f"{name}:1", "app", "default", types, 1)


def test_join_change_leave_bump_the_version() -> None:
    s0 = Membership()
    s1 = apply(s0, upsert_command([host("a"), host("b")], 10))
    assert s1.version == 1 and set(s1.hosts) == {"a", "b"}
    assert s1.hosts["a"].joined_ms == 10
    s2 = apply(s1, upsert_command([host("a", ("wf", "act"))], 20))
    assert s2.version == 2 and s2.hosts["a"].actor_types == ("act", "wf")
    assert s2.hosts["a"].joined_ms == 10  # a change is not a new join
    s3 = apply(s2, remove_command(["b"], RemoveReason.LEFT, 30))
    assert s3.version == 3 and set(s3.hosts) == {"a"}


def test_no_op_changes_keep_the_version() -> None:
    s1 = apply(Membership(), upsert_command([host("a")], 10))
    assert apply(s1, upsert_command([host("a")], 50)) is s1
    assert apply(s1, remove_command(["zz"], RemoveReason.EXPIRED, 50)) is s1


def test_leader_command_bumps_version_and_records_term() -> None:
    s1 = apply(Membership(), upsert_command([host("a")], 10))
    s2 = apply(s1, leader_command(7, 11))
    assert (s2.version, s2.leader_term, set(s2.hosts)) == (2, 7, {"a"})
    with pytest.raises(InvalidCommandError):
        apply(s2, leader_command(6, 12))


@pytest.mark.parametrize(
    "command",
    [
        {"op": "upsert", "hosts": []},
        {"op": "upsert", "now_ms": -1, "hosts": []},
        {"op": "frobnicate", "now_ms": 1},
        {"op": "upsert", "now_ms": 1, "hosts": [{"name": "x"}]},
        {"op": "upsert", "now_ms": 1, "hosts": [{**host("x").to_wire(), "actor_types": "wf"}]},
        {"op": "remove", "now_ms": 1, "names": ["a"], "reason": "bored"},
    ],
)
def test_malformed_commands_are_refused(command: dict[str, object]) -> None:
    with pytest.raises((InvalidCommandError, ValueError)):
        apply(Membership(), command)


def test_apply_is_deterministic_and_round_trips() -> None:
    commands = [
        upsert_command([host("b"), host("a")], 1),
        leader_command(2, 2),
        upsert_command([host("c", ("x",))], 3),
        remove_command(["a"], RemoveReason.UNACKED, 4),
    ]
    s1 = s2 = Membership()
    for c in commands:
        s1, s2 = apply(s1, c), apply(s2, c)
    assert s1 == s2
    assert Membership.from_wire(s1.to_wire()) == s1
    assert [h.name for h in s1.sorted_hosts()] == ["b", "c"]


def test_a_new_incarnation_changes_the_entry_and_an_old_entry_reads_without_one() -> None:
    s1 = apply(Membership(), upsert_command([replace(host("a"), incarnation="i1")], 10))
    assert apply(s1, upsert_command([replace(host("a"), incarnation="i1")], 20)) is s1
    # The same sidecar restarted (back within the drop grace): the table changes, so a
    # round tells every sidecar; the ring is the same and the host keeps its join time.
    s2 = apply(s1, upsert_command([replace(host("a"), incarnation="i2")], 30))
    assert s2.version == s1.version + 1
    assert (s2.hosts["a"].incarnation, s2.hosts["a"].joined_ms) == ("i2", 10)
    assert "incarnation" not in host("b").to_wire()  # the wire form from before it
    assert HostRecord.from_wire(host("b").to_wire()).incarnation == ""
    assert Membership.from_wire(s2.to_wire()) == s2
