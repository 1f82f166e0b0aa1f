"""StateWaits: futures settled by the changes that pass their test, by their bound, or
by a release; and the tally of callers held."""

from __future__ import annotations

import asyncio

from sidecar.engine.waits import StateWaits, Waiting


async def test_a_state_that_passes_already_answers_at_once() -> None:
    tally = Waiting()
    waits: StateWaits[int] = StateWaits(tally)
    assert await waits.until(lambda s: s > 1, 5, 10) is True
    assert len(waits) == 0 and tally.callers == 0


async def test_only_the_changes_that_pass_a_test_settle_it() -> None:
    tally = Waiting()
    waits: StateWaits[int] = StateWaits(tally)
    over_3 = waits.until(lambda s: s > 3, 0, 10)
    over_9 = waits.until(lambda s: s > 9, 0, 10)
    assert tally.callers == 2
    waits.changed(2)
    waits.changed(5)
    assert await asyncio.wait_for(over_3, 1) is True
    assert not over_9.done()
    assert len(waits) == 1 and tally.callers == 1
    waits.changed(10)
    assert await asyncio.wait_for(over_9, 1) is True
    assert len(waits) == 0 and tally.callers == 0


async def test_the_bound_and_a_release_answer_false() -> None:
    tally = Waiting()
    waits: StateWaits[int] = StateWaits(tally)
    bounded = waits.until(lambda s: s > 3, 0, 0.01)
    assert await asyncio.wait_for(bounded, 5) is False
    held = waits.until(lambda s: s > 3, 0, 60)
    waits.release()
    assert await asyncio.wait_for(held, 1) is False
    waits.changed(5)  # after the release: nothing left to settle
    assert len(waits) == 0 and tally.callers == 0


async def test_a_cancelled_wait_is_forgotten() -> None:
    tally = Waiting()
    waits: StateWaits[int] = StateWaits(tally)
    withdrawn = waits.until(lambda s: s > 3, 0, 60)
    withdrawn.cancel()
    await asyncio.sleep(0)  # its done callbacks run on the next pass of the loop
    assert len(waits) == 0 and tally.callers == 0
    waits.changed(5)
