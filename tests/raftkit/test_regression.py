"""`Regression`: refusals in a row for the grace tell a group gone back in time from a
deposed leader."""

from __future__ import annotations

import pytest

from raftkit.regression import Regression


def test_refusals_in_a_row_for_the_grace_follow_the_group_then_start_over() -> None:
    r = Regression(grace_s=10.0)
    assert [r.refused(t) for t in (0.0, 3.0, 6.0, 9.9)] == [False] * 4
    assert r.refused(10.0)
    assert not r.refused(10.5)  # a new count from here


def test_an_acceptance_between_starts_the_count_over() -> None:
    r = Regression(grace_s=10.0)
    assert not r.refused(0.0)
    r.accepted()
    assert not r.refused(9.0)
    assert not r.refused(18.0)
    assert r.refused(19.0)


def test_refusals_further_apart_than_the_grace_are_not_in_a_row() -> None:
    """A deposed leader seen now and then (elections) never adds up to a regression."""
    r = Regression(grace_s=10.0)
    assert [r.refused(t) for t in (0.0, 10.0, 20.0, 30.5)] == [False] * 4
    assert not r.refused(35.0)
    assert r.refused(40.5)


def test_the_grace_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Regression(grace_s=0)
