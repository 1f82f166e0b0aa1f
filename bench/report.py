"""What every bench scenario shares: machine facts, percentiles, the JSON result file
(DESIGN.md section 7), the human-readable table, the charts (`--plot DIR`, drawn by
`bench.plots`) and the command-line options for all of these."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_printer(quiet: bool, prefix: str) -> Callable[[str], None]:
    """One line of progress on stderr per step of a long run (`-q` silences it)."""

    def status(line: str) -> None:
        if not quiet:
            print(f"  [{prefix}] {line}", file=sys.stderr, flush=True)

    return status


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def median_of(repetitions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row for repeated runs of the same measurement: every number is its median
    over the repetitions (each field on its own; an int field stays an int when the
    median is whole), anything else is taken from the first; the repetitions
    themselves go along under `repetitions` when there are several."""
    if not repetitions:
        raise ValueError("no repetitions to summarise")
    row: dict[str, Any] = {}
    for key, first in repetitions[0].items():
        values = [rep[key] for rep in repetitions if key in rep]
        if isinstance(first, bool) or not isinstance(first, int | float):
            row[key] = first
            continue
        middle = statistics.median(values)
        whole = all(isinstance(v, int) for v in values) and float(middle).is_integer()
        row[key] = int(middle) if whole else round(float(middle), 3)
    if len(repetitions) > 1:
        row["repetitions"] = [dict(rep) for rep in repetitions]
    return row


def result(
    scenario: str, params: Mapping[str, Any], metrics: Mapping[str, Any], started_at: str
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "params": dict(params),
        "machine": machine(),
        "started_at": started_at,
        "metrics": dict(metrics),
    }


def _plot_dir(text: str) -> Path:
    from bench.plots import matplotlib_available

    # Checked before the run, not after minutes of benchmark.
    if not matplotlib_available():
        raise argparse.ArgumentTypeError("needs matplotlib: pip install 'matplotlib>=3.8,<4'")
    return Path(text)


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--json PATH`, `--plot DIR`, `-q`: the options every scenario passes to `emit`."""
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    parser.add_argument(
        "--plot", type=_plot_dir, default=None, metavar="DIR", help="write PNG charts into DIR"
    )
    parser.add_argument("-q", "--quiet", action="store_true")
    return parser


def _shown(key: str, value: Any) -> str:
    if isinstance(value, list) and (key in ("samples_ms", "repetitions") or len(value) > 8):
        return f"{len(value)} values (in the JSON)"
    return f"{value:,.2f}" if isinstance(value, float) else f"{value}"


def emit(
    data: Mapping[str, Any],
    json_path: Path | None,
    quiet: bool = False,
    plot_dir: Path | None = None,
) -> None:
    if not quiet:
        m = data["machine"]
        print(
            f"scenario {data['scenario']}  ({m['cores']} cores, {m['cpu']}, "
            f"Python {m['python']}, {data['started_at']})"
        )
        print("  params: " + ", ".join(f"{k}={v}" for k, v in data["params"].items()))
        for key, value in data["metrics"].items():
            if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                print(f"  {key}")  # rows (fanout's N, scale's sizes): one line each
                for row in value:
                    print("    " + ", ".join(f"{k}={_shown(k, v)}" for k, v in row.items()))
                continue
            print(f"  {key:<28} {_shown(key, value)}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        if not quiet:
            print(f"  wrote {json_path}", file=sys.stderr)
    if plot_dir is not None:
        from bench.plots import plot

        for path in plot(data, plot_dir):
            if not quiet:
                print(f"  wrote {path}", file=sys.stderr)
