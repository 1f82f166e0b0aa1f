"""`actorflow bench sdk-ceiling`, with the real SDK app against the no-op server: whole,
and the parts `bench fanout` (`--activities-only`) and `bench latency` (`--rtt-only`)
measure right before their own runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.workflow_bench import measure_ceiling


def test_the_activities_only_ceiling_runs_the_sdk_app(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "sdk-ceiling", "--n", "100",
         "--rtt", "0", "--activities-only", "--json", str(out), "-q"],
        check=True, timeout=120,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["params"]["activities_only"] is True
    metrics = data["metrics"]
    assert set(metrics) == {
        "activities_per_s", "server_cpu_ms_per_activity", "app_cpu_ms_per_activity"
    }  # fmt: skip
    assert metrics["activities_per_s"] > 0
    # Both processes did work for the activities: the SDK app ran them, the server
    # handed them out and took the answers.
    assert metrics["server_cpu_ms_per_activity"] > 0
    assert metrics["app_cpu_ms_per_activity"] > 0
    assert measure_ceiling(100)["activities_per_s"] > 0  # what `bench fanout` calls


def test_the_round_trips_only_ceiling_is_what_bench_latency_compares_with() -> None:
    metrics = measure_ceiling(0, "--rtt-only", "--rtt", "5")
    assert set(metrics) == {"activity_rtt_p50_ms", "turn_rtt_p50_ms"}
    assert metrics["activity_rtt_p50_ms"] > 0 and metrics["turn_rtt_p50_ms"] > 0


def test_a_full_ceiling_run_has_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "sdk-ceiling", "--n", "50",
         "--rtt", "5", "--json", str(out), "-q"],
        check=True, timeout=120,
    )  # fmt: skip
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {
        "activities_per_s", "server_cpu_ms_per_activity", "app_cpu_ms_per_activity",
        "turns_per_s", "activity_rtt_p50_ms", "turn_rtt_p50_ms",
    }  # fmt: skip
    assert all(value > 0 for key, value in metrics.items() if "cpu" not in key)
