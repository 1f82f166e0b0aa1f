from __future__ import annotations

from dataclasses import replace

from placement.api.v1 import placement_pb2 as pb
from placement.client import table_from_delta, table_from_proto
from placement.dissemination import Operation
from placement.membership import HostRecord, Membership
from placement.streams import delta_proto, table_proto
from placement.table import Accepted, Ignored, Table, TableHost, TableView


def th(name: str) -> TableHost:
    return TableHost(name, f"{name}:1", "app", "default", ("wf",), 1)


def table(version: int, term: int, *names: str) -> Table:
    return Table.build(version, term, [th(n) for n in names])


def whole_round(view: TableView, version: int, term: int, *names: str) -> list[object]:
    """LOCK, UPDATE to a table of `names`, UNLOCK: each outcome."""
    return [
        view.apply(op, version, term, t)
        for op, t in (
            (Operation.LOCK, None),
            (Operation.UPDATE, table(version, term, *names)),
            (Operation.UNLOCK, None),
        )
    ]


def test_round_applies_in_order_and_unlocks() -> None:
    view = TableView()
    assert view.locked and view.table is None
    assert isinstance(view.apply(Operation.LOCK, 1, 1), Accepted)
    assert isinstance(view.apply(Operation.UPDATE, 1, 1, table(1, 1, "a", "b")), Accepted)
    assert view.locked
    assert isinstance(view.apply(Operation.UNLOCK, 1, 1), Accepted)
    assert not view.locked and view.version == 1


def test_older_term_or_version_is_refused() -> None:
    view = TableView()
    whole_round(view, 5, 3, "a")
    assert isinstance(view.apply(Operation.LOCK, 6, 2), Ignored)  # deposed leader
    assert isinstance(view.apply(Operation.UPDATE, 4, 3, table(4, 3, "x")), Ignored)
    assert view.version == 5 and not view.locked
    # The same version from a newer leader (a catch-up round) is taken.
    assert isinstance(view.apply(Operation.LOCK, 5, 4), Accepted)


def test_refusals_for_an_older_term_or_version_are_marked_stale() -> None:
    view = TableView()
    for op, t in ((Operation.LOCK, None), (Operation.UPDATE, table(5, 3, "a"))):
        view.apply(op, 5, 3, t)
    older_term = view.apply(Operation.LOCK, 9, 2)
    older_version = view.apply(Operation.LOCK, 4, 3)
    other = view.apply(Operation.UNLOCK, 6, 3)  # not the held table: refused, not stale
    assert isinstance(older_term, Ignored) and older_term.stale
    assert isinstance(older_version, Ignored) and older_version.stale
    assert isinstance(other, Ignored) and not other.stale


def test_a_forgotten_view_takes_a_group_gone_back_as_if_first_heard() -> None:
    """Placement restored from an older copy or started empty (see raftkit.regression)."""
    view = TableView()
    whole_round(view, 7, 4, "a")
    view.forget()
    assert view.locked and view.table is None and view.version == 0
    assert all(isinstance(o, Accepted) for o in whole_round(view, 2, 1, "b"))
    assert not view.locked and view.table == table(2, 1, "b")


def test_unlock_without_the_matching_table_is_refused() -> None:
    view = TableView()
    view.apply(Operation.LOCK, 2, 1)
    assert isinstance(view.apply(Operation.UNLOCK, 2, 1), Ignored)
    assert view.locked


def rec(name: str, types: tuple[str, ...] = ("wf",)) -> HostRecord:
    return HostRecord(name, f"{name}:1", "app", "default", types, 1)


def test_delta_rebuilds_the_same_table_as_a_full_copy() -> None:
    base = Membership({n: rec(n) for n in ("a", "b", "c")}, version=4)
    new = Membership({"a": rec("a"), "c": rec("c", ("wf", "act")), "d": rec("d")}, version=6)
    held = table_from_proto(table_proto(base, 2, 100))
    order = pb.PlacementOrder(operation=pb.OPERATION_UPDATE, version=6, term=2)
    order.delta.CopyFrom(delta_proto(base, new, 100))
    assert list(order.delta.removed) == ["b"]
    assert sorted(h.name for h in order.delta.upserts) == ["c", "d"]
    from_delta = table_from_delta(held, order)
    full = table_from_proto(table_proto(new, 2, 100))
    assert from_delta is not None
    assert from_delta.hosts == full.hosts and from_delta.version == 6
    for actor in ("x", "y", "z"):
        assert from_delta.rings.lookup("default", "wf", actor) == full.rings.lookup(
            "default", "wf", actor
        )


def test_delta_on_the_wrong_base_is_not_applied() -> None:
    base = Membership({"a": rec("a")}, version=4)
    new = Membership({"a": rec("a"), "b": rec("b")}, version=5)
    order = pb.PlacementOrder(operation=pb.OPERATION_UPDATE, version=5, term=1)
    order.delta.CopyFrom(delta_proto(base, new, 100))
    other = table_from_proto(table_proto(Membership({"a": rec("a")}, version=3), 1, 100))
    assert table_from_delta(other, order) is None
    assert table_from_delta(None, order) is None


def test_a_host_restarted_reaches_every_table_as_a_change() -> None:
    """A new incarnation alone makes a delta upsert, and both kinds of update carry it."""
    base = Membership({n: replace(rec(n), incarnation="one") for n in ("a", "b")}, version=4)
    new = Membership({**base.hosts, "b": replace(rec("b"), incarnation="two")}, version=5)
    order = pb.PlacementOrder(operation=pb.OPERATION_UPDATE, version=5, term=1)
    order.delta.CopyFrom(delta_proto(base, new, 100))
    assert [h.name for h in order.delta.upserts] == ["b"] and not order.delta.removed
    held = table_from_proto(table_proto(base, 1, 100))
    from_delta = table_from_delta(held, order)
    full = table_from_proto(table_proto(new, 1, 100))
    assert from_delta is not None and from_delta.hosts == full.hosts
    assert {h.name: h.incarnation for h in full.hosts} == {"a": "one", "b": "two"}
