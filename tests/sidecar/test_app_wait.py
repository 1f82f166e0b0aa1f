"""`AppWait`: when a sidecar warns that work waits with no app, and when it says it is over."""

from __future__ import annotations

from sidecar.engine.app_wait import AppWait


def test_warns_after_the_wait_then_each_repeat() -> None:
    watch = AppWait(warn_after_s=10, repeat_s=60)
    assert watch.observe(100.0, connections=0, turns=2, activities=0) is None
    assert watch.observe(109.9, connections=0, turns=2, activities=1) is None
    notice = watch.observe(110.0, connections=0, turns=2, activities=1)
    assert notice is not None and notice.warning
    assert "2 workflow turn(s) and 1 activity(ies) have waited 10s" in notice.message
    assert watch.observe(169.9, connections=0, turns=2, activities=1) is None
    again = watch.observe(170.0, connections=0, turns=3, activities=0)
    assert again is not None and again.warning and "waited 70s" in again.message


def test_an_app_connecting_ends_the_wait_once() -> None:
    watch = AppWait(warn_after_s=1)
    watch.observe(0.0, connections=0, turns=1, activities=0)
    assert watch.observe(1.0, connections=0, turns=1, activities=0) is not None
    over = watch.observe(1.5, connections=1, turns=1, activities=0)
    assert over is not None and not over.warning and "an app connected" in over.message
    assert watch.observe(2.0, connections=1, turns=0, activities=0) is None
    # A new wait is timed from its own start.
    assert watch.observe(3.0, connections=0, turns=0, activities=4) is None
    assert watch.observe(3.9, connections=0, turns=0, activities=4) is None
    assert watch.observe(4.0, connections=0, turns=0, activities=4) is not None


def test_work_gone_without_an_app_is_said_too() -> None:
    watch = AppWait(warn_after_s=1)
    watch.observe(0.0, connections=0, turns=1, activities=0)
    watch.observe(1.0, connections=0, turns=1, activities=0)
    over = watch.observe(2.0, connections=0, turns=0, activities=0)
    assert over is not None and not over.warning and "no work waits" in over.message


def test_nothing_is_said_of_a_short_wait_or_of_an_app_with_work() -> None:
    watch = AppWait(warn_after_s=5)
    assert watch.observe(0.0, connections=0, turns=1, activities=0) is None
    assert watch.observe(4.0, connections=0, turns=0, activities=0) is None  # it was taken
    assert watch.observe(6.0, connections=0, turns=1, activities=0) is None  # a new wait
    assert watch.observe(100.0, connections=2, turns=50, activities=50) is None  # queued, served
