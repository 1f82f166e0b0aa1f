"""`actorflow bench report`: the issues' targets read from result files, met or not,
and a scenario that did not run never counted as met."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import result
from bench.summary import TARGETS, all_main, evaluate, load, render, report_main


def _results() -> dict[str, dict[str, Any]]:
    fanout = {
        "runs": [
            {"n": 1000, "of_ceiling": 0.85, "sidecar_cpu_ms_per_activity": 0.9},
            {"n": 10000, "of_ceiling": 0.65, "sidecar_cpu_ms_per_activity": 1.1},
        ]
    }
    latency = {"p99_ms": 24.0, "p50_over_sdk_round_trips": 2.0, "sidecar_cpu_ms_per_workflow": 3.1}
    checkpoint = {"batches": [{"ratio_p50": 1.2}, {"ratio_p50": 1.6}, {"ratio_p50": 1.1}]}
    live = {"workflows": 200, "lost": [], "wrong_output": ["x"], "history_anomalies": []}
    return {
        "fanout": result("fanout", {}, fanout, "2026-11-27T03:00:00+00:00"),
        "latency": result("latency", {}, latency, "2026-11-27T03:01:00+00:00"),
        "checkpoint": result("checkpoint", {}, checkpoint, "2026-11-27T03:02:00+00:00"),
        "scale-live": result("scale", {"live": True}, live, "2026-11-27T03:03:00+00:00"),
        "sdk-ceiling": result("sdk-ceiling", {}, {"activities_per_s": 900.0}, "2026-11-27T02:59"),
    }


def _verdicts(results: dict[str, dict[str, Any]]) -> dict[tuple[str, str], bool | None]:
    return {(r.scenario, r.what): r.met for r in evaluate(results) if r.target}


def test_each_target_is_read_and_compared_in_its_direction() -> None:
    got = _verdicts(_results())
    assert got[("fanout", "N=1000, share of the SDK ceiling")] is True  # 85% >= 80%
    assert got[("fanout", "N=10000, share of the SDK ceiling")] is False  # 65% < 70%
    assert got[("fanout", "sidecar CPU per activity, N=1000")] is False  # 0.9 > 0.5 ms
    assert got[("latency", "p99")] is True  # 24 <= 25 ms
    assert got[("latency", "p50 over the SDK's three round trips")] is False
    # The worst batch size decides: 1.6 > 1.5 although the others are within.
    assert got[("checkpoint", "worst p50 ratio to the raw transaction")] is False
    # A wrong output counts against "completed exactly once".
    assert got[("scale-live", "workflows lost or wrong while scaling")] is False


def test_a_scenario_that_did_not_run_is_not_met() -> None:
    rows = [r for r in evaluate(_results()) if r.scenario == "reminders"]
    assert rows and all(r.met is None and r.figure == "not run" for r in rows)
    page = render(_results())
    assert "| reminders | #4 | registration p99 | not run | <= 20 ms | not run |" in page
    met = sum(1 for r in evaluate(_results()) if r.met)
    assert f"Targets met: {met} of {len(TARGETS)}." in page


def test_reference_figures_carry_no_verdict() -> None:
    rows = [r for r in evaluate(_results()) if r.scenario == "sdk-ceiling"]
    assert [(r.what, r.figure, r.target, r.met) for r in rows] == [
        ("activities", "900/s", "", None)
    ]


def test_fanout_on_etcd_is_a_reference_read_from_its_rows() -> None:
    runs = {
        "runs": [
            {"n": 1000, "activities_per_s": 548.0},
            {"n": 10000, "activities_per_s": 583.1, "sidecar_cpu_ms_per_activity": 0.95},
        ]
    }
    etcd = result("fanout", {"store": "etcd"}, runs, "2026-11-27T03:04:00+00:00")
    rows = [r for r in evaluate({"fanout-etcd": etcd}) if r.scenario == "fanout-etcd"]
    assert [(r.what, r.figure, r.target, r.met) for r in rows] == [
        ("N=1000 on etcd, activities", "548/s", "", None),
        ("N=10000 on etcd, activities", "583/s", "", None),
        ("N=10000 on etcd, sidecar CPU per activity", "0.95 ms", "", None),
    ]
    # It counts toward no target, and the SQLite fanout's targets stay "not run".
    assert all(r.met is None for r in evaluate({"fanout-etcd": etcd}))


def test_a_scenario_with_targets_may_also_have_reference_figures() -> None:
    rows = [(r.what, r.figure, r.met) for r in evaluate(_results()) if r.scenario == "latency"]
    # Only the figures the result holds: no round trips (measured without the ceiling).
    assert rows[-1] == ("sidecar CPU per workflow", "3.1 ms", None)
    assert [what for what, _, met in rows if met is not None] == [
        "p99",
        "p50 over the SDK's three round trips",
    ]


def test_the_report_reads_a_directory_of_result_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, data in _results().items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    (tmp_path / "other.json").write_text(json.dumps({"not": "a result"}))
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "latency-percentiles.png").write_bytes(b"")
    assert sorted(load(tmp_path)) == sorted(_results())
    out = tmp_path / "summary.md"
    assert report_main([str(tmp_path), "--charts", str(charts), "--out", str(out)]) == 0
    page = capsys.readouterr().out
    assert page == out.read_text()
    assert "Runs started 2026-11-27T02:59 to 2026-11-27T03:03:00+00:00 (UTC)." in page
    assert f"![latency-percentiles]({charts}/latency-percentiles.png)" in page


def test_an_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(tmp_path)]) == 2
    assert "no results" in capsys.readouterr().err


def test_all_runs_the_scenarios_and_writes_the_summary(tmp_path: Path) -> None:
    """One real scenario (the machine probe, 5 s) through `bench all`."""
    assert all_main(["--out", str(tmp_path), "--only", "machine", "--no-plot", "-q"]) == 0
    assert load(tmp_path)["machine"]["scenario"] == "machine"
    page = (tmp_path / "summary.md").read_text()
    assert "| machine |  | stalls over 5 ms |" in page
    assert "| fanout | #7 | N=1000, share of the SDK ceiling | not run |" in page


def test_all_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        all_main(["--out", str(tmp_path), "--only", "nope"])
