"""`FreezeSurvivors`: survivors of a collection are frozen, garbage is not."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from raftkit.gcpolicy import FreezeSurvivors


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _garbage_cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def _settle() -> None:
    for _ in range(3):  # the freeze is scheduled with call_soon_threadsafe
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _unfrozen() -> object:
    gc.unfreeze()
    yield None
    gc.unfreeze()


async def test_survivors_of_a_collection_are_frozen() -> None:
    async with FreezeSurvivors() as policy:
        kept = [_Node() for _ in range(1000)]
        gc.collect()
        await _settle()
        assert policy.freezes == 1
        assert gc.get_freeze_count() >= len(kept)
        assert all(gc.is_tracked(n) for n in kept)


async def test_cycles_that_were_garbage_are_collected_not_frozen() -> None:
    async with FreezeSurvivors():
        ref = _garbage_cycle()
        gc.collect()
        await _settle()
        assert ref() is None


async def test_generation_0_collections_freeze_nothing() -> None:
    async with FreezeSurvivors() as policy:
        gc.collect(0)
        await _settle()
        assert policy.freezes == 0


async def test_reclaim_collects_a_cycle_that_became_garbage_while_frozen() -> None:
    async with FreezeSurvivors() as policy:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gc.collect()
        await _settle()
        ref = weakref.ref(a)
        del a, b  # now garbage, but frozen: plain collections cannot see it
        gc.collect()
        assert ref() is not None
        policy.reclaim()
        assert ref() is None
        await _settle()
        assert policy.reclaims == 1


async def test_leaving_uninstalls_the_callback() -> None:
    policy = FreezeSurvivors()
    async with policy:
        pass
    gc.collect()
    await _settle()
    assert policy.freezes == 0


def test_reclaim_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="reclaim_every_s"):
        FreezeSurvivors(reclaim_every_s=0)
