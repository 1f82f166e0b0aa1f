"""`bench placement`: a run whose host streams placement ended is void and made again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import placement_bench
from bench.placement_sim import StreamLostError, Tracker, wait_until


async def test_waiting_stops_as_soon_as_a_stream_is_lost() -> None:
    tracker = Tracker()

    async def lose() -> None:
        await asyncio.sleep(0)  # the wait below is under way
        tracker.lost = "sim-00001: UNAVAILABLE not the leader any more"
        tracker.changed.set()

    loser = asyncio.create_task(lose())
    with pytest.raises(StreamLostError, match="sim-00001"):
        await wait_until(tracker, lambda: None, timeout=60)  # would wait the full 60 s
    await loser


SIM: dict[str, Any] = {
    "latencies_ms": [300.0, 310.0], "bytes_per_round": [1000], "join_s": 1.5, "join_rounds": 3,
}  # fmt: skip


def _args(*extra: str) -> Any:
    return placement_bench.build_parser().parse_args(["--lookup-seconds=0.05", "-q", *extra])


def test_a_void_run_is_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [None, None, SIM]
    monkeypatch.setattr(placement_bench, "_simulate", lambda args, status: outcomes.pop(0))
    metrics: Any = placement_bench.run(_args())["metrics"]
    assert metrics["attempts"] == 3
    assert metrics["dissemination_max_ms"] == 310.0  # the third run's figures


def test_it_gives_up_after_three_void_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement_bench, "_simulate", lambda args, status: None)
    with pytest.raises(RuntimeError, match="each of 3 attempts"):
        placement_bench.run(_args())
