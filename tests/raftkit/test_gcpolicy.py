"""`CollectorPolicy`: full GC passes walk only what is new; a sweep (after a while, or
once the frozen objects have doubled) still reclaims garbage cycles among them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from raftkit.gcpolicy import CollectorPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def policy() -> Iterator[tuple[CollectorPolicy, FakeClock]]:
    clock = FakeClock()
    p = CollectorPolicy(sweep_every_s=60.0, clock=clock)
    p.install()
    gc.disable()  # only the tests' own gc.collect() calls make passes
    try:
        yield p, clock
    finally:
        gc.enable()
        p.uninstall()


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_install_freezes_what_is_alive_and_each_full_pass_freezes_its_survivors(
    policy: tuple[CollectorPolicy, FakeClock],
) -> None:
    p, _ = policy
    assert gc.get_freeze_count() > 0
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    gc.collect()  # a full pass
    assert p.freezes == 1
    assert gc.get_freeze_count() >= before + len(kept)
    # A young pass freezes nothing.
    gc.collect(0)
    assert p.freezes == 1


def test_garbage_is_never_frozen_by_a_pass(policy: tuple[CollectorPolicy, FakeClock]) -> None:
    ref = _cycle()  # garbage already: nothing refers to the pair
    gc.collect()
    assert ref() is None


def test_a_sweep_reclaims_a_cycle_that_became_garbage_while_frozen(
    policy: tuple[CollectorPolicy, FakeClock],
) -> None:
    p, clock = policy
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gc.collect()  # the pair is alive: frozen
    del a, b  # now a garbage cycle, but frozen
    gc.collect()
    assert ref() is not None  # the price of freezing
    clock.now += 61.0
    gc.collect()  # this pass ends with an unfreeze ...
    assert p.sweeps == 1
    gc.collect()  # ... so the next one walks everything
    assert ref() is None
    assert p.freezes >= 3  # and freezing goes on after the sweep


def test_a_sweep_comes_once_the_frozen_objects_have_doubled(
    policy: tuple[CollectorPolicy, FakeClock],
) -> None:
    p, _ = policy
    kept = [Node() for _ in range(2 * gc.get_freeze_count())]
    gc.collect()  # frozen: at least twice what was frozen at install
    assert p.sweeps == 0
    gc.collect()  # grown: this pass ends with an unfreeze
    assert p.sweeps == 1
    assert gc.get_freeze_count() == 0
    gc.collect()  # walks everything, then freezes again from a new baseline
    assert gc.get_freeze_count() >= len(kept)
    gc.collect()
    assert p.sweeps == 1


def test_uninstall_restores_the_default_collector() -> None:
    p = CollectorPolicy()
    p.install()
    p.uninstall()
    assert gc.get_freeze_count() == 0
    assert p._on_pass not in gc.callbacks
    gc.collect()
    assert p.freezes == 0


def test_the_sweep_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="sweep_every_s"):
        CollectorPolicy(sweep_every_s=0)
    with pytest.raises(ValueError, match="sweep_growth"):
        CollectorPolicy(sweep_growth=1.0)
