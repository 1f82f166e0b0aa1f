"""What every bench scenario shares: machine facts, percentiles, the JSON result file
(DESIGN.md section 7), the human-readable table, the charts (`--plot DIR`, drawn by
`bench.plots`) and the command-line options for all of these."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


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
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value}"
            if isinstance(value, list) and (key == "samples_ms" or len(value) > 8):
                shown = f"{len(value)} values (in the JSON)"
            print(f"  {key:<28} {shown}")
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
