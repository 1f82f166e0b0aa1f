"""Repeated measurements summarised as medians (`bench.report.median_of`), and how the
human-readable table shows rows and repetitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import emit, median_of, result, status_printer


def test_each_number_is_its_own_median_and_the_repetitions_go_along() -> None:
    reps = [
        {"n": 1000, "activities_per_s": 700.0, "of_ceiling": 0.9, "turns": 3, "note": "a"},
        {"n": 1000, "activities_per_s": 500.0, "of_ceiling": 0.7, "turns": 4, "note": "b"},
        {"n": 1000, "activities_per_s": 650.0, "of_ceiling": 0.95, "turns": 3, "note": "c"},
    ]
    row = median_of(reps)
    assert row["n"] == 1000 and isinstance(row["n"], int)
    assert row["activities_per_s"] == 650.0
    assert row["of_ceiling"] == 0.9  # its own median, not the 650/s repetition's 0.95
    assert row["turns"] == 3 and isinstance(row["turns"], int)
    assert row["note"] == "a"
    assert row["repetitions"] == reps


def test_an_even_count_takes_the_mean_of_the_middle_two() -> None:
    row = median_of([{"p99_ms": 10.0, "turns": 3}, {"p99_ms": 30.0, "turns": 4}])
    assert row["p99_ms"] == 20.0
    assert row["turns"] == 3.5  # not whole: no longer an int
    assert len(row["repetitions"]) == 2


def test_one_repetition_is_the_row_itself() -> None:
    assert median_of([{"p50_ms": 1.5, "ok": True}]) == {"p50_ms": 1.5, "ok": True}
    with pytest.raises(ValueError):
        median_of([])


def test_the_table_shows_one_line_per_row_and_counts_repetitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reps = [{"n": 10, "activities_per_s": 5.0}, {"n": 10, "activities_per_s": 7.0}]
    data = result("fanout", {"n": [10]}, {"runs": [median_of(reps)]}, "now")
    emit(data, tmp_path / "out.json", quiet=False)
    out = capsys.readouterr().out
    assert "    n=10, activities_per_s=6.00, repetitions=2 values (in the JSON)" in out


def test_progress_lines_go_to_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    status_printer(False, "fanout")("N=1000 1/3: 800/s")
    status_printer(True, "fanout")("not shown")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "  [fanout] N=1000 1/3: 800/s\n"
