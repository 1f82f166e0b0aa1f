"""`bench.plots`: a PNG for every scenario shape, a clear refusal for an unknown one, and
no matplotlib import unless a chart is drawn."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import plots
from bench.report import add_common_args, emit

PNG = b"\x89PNG\r\n\x1a\n"
MACHINE = {"cores": 2, "cpu": "Test CPU", "python": "3.11.7"}

METRICS: dict[str, dict[str, Any]] = {
    "fanout": {
        "runs": [
            {
                "n": n,
                "wall_s": n / 700,
                "activities_per_s": 700.0,
                "sidecar_cpu_ms_per_activity": 1.0,
                "ceiling_server_cpu_ms_per_activity": 0.5,
            }
            for n in (10, 100)
        ]
    },
    "chain": {
        "workflows_per_s": 40.0,
        "activities_per_s": 400.0,
        "workflow_p50_ms": 1900.0,
        "workflow_p99_ms": 2000.0,
    },
    "latency": {"p50_ms": 7.0, "p99_ms": 15.0, "mean_ms": 7.5, "samples_ms": [6.0, 7.0, 7.2, 15.0]},
    "latency-floor": {"floor_p50_ms": 5.0, "floor_p99_ms": 7.0},
    "actors": {
        "remote_call_p50_ms": 0.7,
        "remote_call_p99_ms": 14.0,
        "calls_per_s": 498.0,
        "calls": 4.0,
        "http_api_p50_ms": 1.5,
        "http_api_p99_ms": 38.0,
        "samples_ms": [0.6, 0.7, 0.8, 14.0],
    },
    "sdk-ceiling": {
        "activities_per_s": 1453.0,
        "turns_per_s": 1573.0,
        "activity_rtt_p50_ms": 0.9,
        "turn_rtt_p50_ms": 0.94,
    },
    "engine": {
        "runs": [
            {
                "n": 1000,
                "cpu_us_per_activity": 171.0,
                "activities_per_s": 5800.0,
                "gc_ms_per_run": 12.0,
            },
            {
                "n": 5000,
                "cpu_us_per_activity": 160.0,
                "activities_per_s": 6100.0,
                "gc_ms_per_run": 60.0,
            },
        ]
    },
    "scale": {
        "runs": [
            {"sidecars": n, "workflows_per_s": 7.0 * n, "ideal_workflows_per_s": 7.5 * n}
            for n in (1, 2, 4)
        ],
        "speedup": 4.0,
    },
    "placement": {
        "dissemination_p50_ms": 195.0,
        "dissemination_p99_ms": 281.0,
        "dissemination_max_ms": 281.0,
        "changes_measured": 40,
    },
    "reminders": {
        "register_per_s": 9198.0,
        "register_p50_ms": 6.4,
        "register_p99_ms": 25.0,
        "triggers_per_s": 74294.0,
        "burst_lateness_p50_ms": 764.0,
        "burst_lateness_p99_ms": 1337.0,
        "lateness_p50_ms": 0.0,
        "lateness_p99_ms": 90.0,
        "failover_lateness_p50_ms": 1.0,
        "failover_lateness_p99_ms": 1635.0,
    },
    "checkpoint": {
        "batches": [
            {"store": s, "events": k, "checkpoint_p50_ms": 0.3 * k, "raw_p50_ms": 0.2 * k}
            for s in ("sqlite", "etcd")
            for k in (1, 10)
        ]
    },
    "locust": {
        "failures": 0,
        "workflows_per_s": 59.7,
        "workflow_p50_ms": 656.0,
        "workflow_p95_ms": 1161.0,
        "workflow_p99_ms": 1427.0,
    },
    "machine": {
        "unit_p50_ms": 1.2,
        "stalls": 1,
        "slow_fraction": 0.01,
        "timeline": [[i / 1000, 16.0 if i == 500 else 1.2] for i in range(1000)],
    },
}
LIVE_SCALE = {"duplicate_activities": 3, "activities_by_app": {"sidecar-0": 10, "sidecar-1": 12}}


def sample(scenario: str, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "params": {"n": 1},
        "machine": MACHINE,
        "started_at": "2026-11-26T12:00:00+00:00",
        "metrics": METRICS[scenario] if metrics is None else metrics,
    }


def assert_pngs(paths: list[Path]) -> None:
    assert paths
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG), path
        assert len(data) > 1000, path


@pytest.fixture(autouse=True, scope="module")
def _needs_matplotlib() -> None:
    pytest.importorskip("matplotlib")


def test_every_scenario_has_a_sample() -> None:
    assert set(METRICS) == set(plots.PLOTTERS)


@pytest.mark.parametrize("scenario", sorted(METRICS))
def test_a_chart_is_written_for_each_scenario(scenario: str, tmp_path: Path) -> None:
    paths = plots.plot(sample(scenario), tmp_path)
    assert_pngs(paths)
    assert all(p.name.startswith(f"{scenario}-") for p in paths)


@pytest.mark.parametrize("scenario", ["latency", "actors"])
def test_raw_samples_add_a_histogram(scenario: str, tmp_path: Path) -> None:
    names = {p.name for p in plots.plot(sample(scenario), tmp_path)}
    assert f"{scenario}-histogram.png" in names
    without = {k: v for k, v in METRICS[scenario].items() if k != "samples_ms"}
    assert len(plots.plot(sample(scenario, without), tmp_path / "none")) == 1


def test_latency_with_its_floor_adds_the_comparison(tmp_path: Path) -> None:
    measured = {**METRICS["latency"], "sdk_round_trips_ms": 4.0, "floor_p50_ms": 5.5}
    names = {p.name for p in plots.plot(sample("latency", measured), tmp_path)}
    assert "latency-floor.png" in names
    without = plots.plot(sample("latency"), tmp_path / "b")
    assert "latency-floor.png" not in {p.name for p in without}


def test_live_scale_result_is_charted(tmp_path: Path) -> None:
    assert_pngs(plots.plot(sample("scale", LIVE_SCALE), tmp_path))


def test_unknown_scenario_is_refused(tmp_path: Path) -> None:
    data = {**sample("chain"), "scenario": "warp-drive"}
    with pytest.raises(plots.UnknownScenarioError, match=r"unknown scenario 'warp-drive'.*chain"):
        plots.plot(data, tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_charts_json_files_under_their_stem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run2.json"
    path.write_text(json.dumps(sample("placement")))
    assert plots.main([str(path), "--out", str(tmp_path / "charts")]) == 0
    assert_pngs([tmp_path / "charts" / "run2-dissemination.png"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**sample("placement"), "scenario": "nope"}))
    assert plots.main([str(bad), "--out", str(tmp_path)]) == 1
    assert "unknown scenario 'nope'" in capsys.readouterr().err


def test_common_args_and_emit_write_json_and_charts(tmp_path: Path) -> None:
    parser = add_common_args(argparse.ArgumentParser())
    args = parser.parse_args(["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path), "-q"])
    emit(sample("chain"), args.json, args.quiet, args.plot)
    assert json.loads((tmp_path / "r.json").read_text())["scenario"] == "chain"
    assert_pngs([tmp_path / "chain-percentiles.png"])


def test_importing_plots_and_report_does_not_import_matplotlib() -> None:
    code = "import sys, bench.plots, bench.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
