"""`actorflow bench machine`: the analysis on made-up timelines, and one short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import machine_bench
from bench.machine_bench import analyse


def _steady(n: int, ms: float = 1.0) -> list[tuple[float, float]]:
    return [(i * ms / 1000, ms) for i in range(n)]


def test_a_steady_machine_has_no_stalls() -> None:
    report = analyse(_steady(1000))
    assert report.unit_p50_ms == 1.0
    assert report.slow_fraction == 0.0
    assert report.stalls == 0
    assert report.clusters == 0
    assert report.slow_ms_per_s == 0.0


def test_stalls_and_their_clusters_are_counted() -> None:
    samples = _steady(3000)  # 3 s of 1 ms units
    # Two clusters 1.5 s apart: a 16 ms stall with a slow unit beside it, then a 9 ms one.
    for index, ms in ((500, 17.0), (501, 2.0), (2000, 10.0)):
        samples[index] = (samples[index][0], ms)
    report = analyse(samples, slow_ratio=1.5, stall_ms=5.0)
    assert report.stalls == 2
    assert report.stall_max_ms == pytest.approx(16.0)
    assert report.clusters == 2
    assert report.stall_interval_p50_s == pytest.approx(1.5)
    assert report.slow_fraction == pytest.approx(3 / 3000)
    # 16 + 1 + 9 ms lost over about 3 s.
    assert report.slow_ms_per_s == pytest.approx(26 / 3.0, rel=0.01)


def test_a_slow_wave_is_slow_but_not_a_stall() -> None:
    samples = _steady(1000)
    for index in range(100, 200):
        samples[index] = (samples[index][0], 2.0)
    report = analyse(samples)
    assert report.stalls == 0
    assert report.slow_fraction == pytest.approx(0.1)
    assert report.clusters == 1


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        analyse([])


def test_a_short_real_run_writes_the_result(tmp_path: Path) -> None:
    out = tmp_path / "machine.json"
    assert machine_bench.main(["--seconds", "0.3", "--json", str(out), "-q"]) == 0
    data = json.loads(out.read_text())
    assert data["scenario"] == "machine"
    metrics = data["metrics"]
    assert metrics["units"] == len(metrics["timeline"]) > 0
    assert metrics["unit_p50_ms"] > 0
    assert 0.0 <= metrics["slow_fraction"] <= 1.0
    assert metrics["wake_late_p99_ms"] >= 0.0


def test_seconds_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        machine_bench.main(["--seconds", "0", "-q"])
