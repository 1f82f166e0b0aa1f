"""`actorflow bench report DIR`: one readable page from the JSON results in DIR.

Every scenario writes its result as JSON (`--json`, DESIGN.md section 7). This reads
those files and renders a Markdown summary: the machine and the time of the runs, then
one row per target of the project's issues with the figure measured, the target, and
whether it was met; scenarios without a target (the machine, the SDK ceiling) give their
headline figures. A scenario whose file is absent shows as not run, never as met.

`actorflow bench all --out DIR` runs every scenario in a row (each its own process,
nothing else should run meanwhile), writes their JSON and charts into DIR and this
summary into DIR/summary.md: the whole report with one command.

The evaluation is pure (`evaluate(results)`); reading files and running scenarios are
the two thin edges.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RUN_ORDER", "TARGETS", "Row", "Target", "evaluate", "load", "render"]

Metrics = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """One target of an issue: `read` takes a scenario's metrics to the figure (None
    when the result lacks it), which must be `<=` or `>=` `bound`."""

    scenario: str  # the JSON file's name without `.json` (`scale-live` for `scale --live`)
    issue: int
    what: str
    read: Callable[[Metrics], float | None]
    op: str  # "<=" or ">="
    bound: float
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    issue: int | None
    what: str
    figure: str
    target: str
    met: bool | None  # None: not run, or no target (a reference figure)


def _run_of(n: int, key: str, scale: float = 1.0) -> Callable[[Metrics], float | None]:
    """A field of fanout's row for N = n."""

    def read(m: Metrics) -> float | None:
        for row in m.get("runs", []):
            if row.get("n") == n and key in row:
                return float(row[key]) * scale
        return None

    return read


def _field(key: str, scale: float = 1.0) -> Callable[[Metrics], float | None]:
    def read(m: Metrics) -> float | None:
        value = m.get(key)
        return None if value is None else float(value) * scale

    return read


def _worst_checkpoint_ratio(m: Metrics) -> float | None:
    ratios = [float(b["ratio_p50"]) for b in m.get("batches", []) if "ratio_p50" in b]
    return max(ratios) if ratios else None


def _scale_lost(m: Metrics) -> float | None:
    runs = m.get("runs")
    return None if runs is None else float(sum(int(r.get("lost", 0)) for r in runs))


def _not_completed_once(m: Metrics) -> float | None:
    """Live scaling: workflows lost or completed with a wrong output or history."""
    if "workflows" not in m:
        return None
    bad = len(m.get("lost", [])) + len(m.get("wrong_output", []))
    return float(bad + len(m.get("history_anomalies", [])))


TARGETS: tuple[Target, ...] = (
    # issue 3: placement
    Target("placement", 3, "dissemination p99, 1000 hosts", _field("dissemination_p99_ms"),
           "<=", 500, " ms"),
    Target("placement", 3, "ring lookups", _field("lookups_per_s"), ">=", 500_000, "/s"),
    # issue 4: reminders
    Target("reminders", 4, "registration rate", _field("register_per_s"), ">=", 5_000, "/s"),
    Target("reminders", 4, "registration p99", _field("register_p99_ms"), "<=", 20, " ms"),
    Target("reminders", 4, "triggers, 100k due at once", _field("triggers_per_s"),
           ">=", 20_000, "/s"),
    Target("reminders", 4, "lateness p99 at 20k/s", _field("lateness_p99_ms"), "<=", 250, " ms"),
    Target("reminders", 4, "firing resumes after a leader SIGKILL", _field("failover_resume_s"),
           "<=", 3, " s"),
    # issue 5: actor runtime (blocked; its targets are still measured)
    Target("actors", 5, "remote actor call p50", _field("remote_call_p50_ms"), "<=", 1, " ms"),
    Target("actors", 5, "remote actor call p99", _field("remote_call_p99_ms"), "<=", 5, " ms"),
    # issue 7: workflow benchmarks
    Target("fanout", 7, "N=1000, share of the SDK ceiling", _run_of(1000, "of_ceiling", 100),
           ">=", 80, "%"),
    Target("fanout", 7, "N=10000, share of the SDK ceiling", _run_of(10000, "of_ceiling", 100),
           ">=", 70, "%"),
    Target("fanout", 7, "sidecar CPU per activity, N=1000",
           _run_of(1000, "sidecar_cpu_ms_per_activity"), "<=", 0.5, " ms"),
    Target("chain", 7, "activities", _field("activities_per_s"), ">=", 250, "/s"),
    Target("chain", 7, "workflow p99", _field("workflow_p99_ms", 0.001), "<=", 5, " s"),
    Target("latency", 7, "p99", _field("p99_ms"), "<=", 25, " ms"),
    Target("latency", 7, "p50 over the SDK's three round trips",
           _field("p50_over_sdk_round_trips"), "<=", 1.3, "x"),
    Target("checkpoint", 7, "worst p50 ratio to the raw transaction", _worst_checkpoint_ratio,
           "<=", 1.5, "x"),
    # issue 8: load testing and scaling
    Target("scale", 8, "speedup, 4 pairs over 1", _field("speedup"), ">=", 3.2, "x"),
    Target("scale", 8, "workflows lost", _scale_lost, "<=", 0),
    Target("scale-live", 8, "workflows lost or wrong while scaling", _not_completed_once,
           "<=", 0),
    Target("locust", 8, "failures, 50 users", _field("failures"), "<=", 0),
)  # fmt: skip

# Reference figures: measured, no target. A key names a metric; "N:key" names a field
# of fanout's row for N = N.
REFERENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "machine": (
        ("stalls over 5 ms", "stalls", ""),
        ("longest stall", "stall_max_ms", " ms"),
    ),
    "sdk-ceiling": (
        ("activities", "activities_per_s", "/s"),
        ("activity round trip p50", "activity_rtt_p50_ms", " ms"),
        ("turn round trip p50", "turn_rtt_p50_ms", " ms"),
    ),
    # The engine's share of the sidecar's CPU per activity (no gRPC; `bench engine`).
    "engine": (("CPU per activity, N=5000, no gRPC", "5000:cpu_us_per_activity", " us"),),
    "locust": (
        ("workflows", "workflows_per_s", "/s"),
        ("workflow p95", "workflow_p95_ms", " ms"),
    ),
    "scale-live": (("activities run twice", "duplicate_activities", ""),),
    # The multi-machine store (3 etcd members on this machine's loopback): no target of
    # its own, kept in every set so that its figures are watched (a big fan-out on etcd
    # never completed, unnoticed while only SQLite was measured).
    "fanout-etcd": (
        ("N=1000 on etcd, activities", "1000:activities_per_s", "/s"),
        ("N=10000 on etcd, activities", "10000:activities_per_s", "/s"),
        ("N=10000 on etcd, sidecar CPU per activity", "10000:sidecar_cpu_ms_per_activity", " ms"),
    ),
    "latency": (
        ("the SDK's three round trips", "sdk_round_trips_ms", " ms"),
        ("p50 of a server that keeps nothing, over those", "floor_over_sdk_round_trips", "x"),
        ("sidecar CPU per workflow", "sidecar_cpu_ms_per_workflow", " ms"),
        ("CPU per workflow: sidecar, app and client", "cpu_ms_per_workflow", " ms"),
    ),
}

# The order `bench all` runs them in, with each one's arguments (`scale-live` is
# `scale --live`): cheap and short ones first, so a broken set fails early.
RUN_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("machine", ("machine", "--seconds", "5")),
    ("sdk-ceiling", ("sdk-ceiling",)),
    ("engine", ("engine",)),
    ("fanout", ("fanout",)),
    ("chain", ("chain",)),
    ("latency", ("latency",)),
    ("checkpoint", ("checkpoint",)),
    ("reminders", ("reminders",)),
    ("scale", ("scale",)),
    ("scale-live", ("scale", "--live")),
    (
        "fanout-etcd",
        ("fanout", "--store", "etcd", "--n", "1000", "10000", "--repeat", "1", "--no-ceiling"),
    ),
    ("locust", ("locust", "--users", "50", "--spawn-rate", "10", "--duration", "60")),
    ("actors", ("actors",)),
    ("placement", ("placement", "--hosts", "1000", "--changes", "20")),
)


# Scenarios whose charts `bench all` keeps: fanout-etcd's would take the names of
# fanout's (the charts are named after the scenario the bench ran).
_CHARTED = frozenset(name for name, _ in RUN_ORDER) - {"fanout-etcd"}


def _shown(value: float, unit: str) -> str:
    if value == int(value) and abs(value) >= 10:
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text + unit


def _reference(metrics: Metrics, key: str) -> float | None:
    """A reference figure by its REFERENCES key (None when the result lacks it)."""
    n, colon, field = key.partition(":")
    if colon:
        return _run_of(int(n), field)(metrics)
    return float(metrics[key]) if key in metrics else None


def evaluate(results: Mapping[str, Mapping[str, Any]]) -> list[Row]:
    """Rows for every target and reference figure; `results` maps a scenario's name
    to its JSON result (absent: not run)."""
    rows: list[Row] = []
    for t in TARGETS:
        result = results.get(t.scenario)
        target = f"{t.op} {_shown(t.bound, t.unit)}"
        value = None if result is None else t.read(result.get("metrics", {}))
        if value is None:
            rows.append(Row(t.scenario, t.issue, t.what, "not run", target, None))
            continue
        met = value <= t.bound if t.op == "<=" else value >= t.bound
        rows.append(Row(t.scenario, t.issue, t.what, _shown(value, t.unit), target, met))
    for scenario, figures in REFERENCES.items():
        result = results.get(scenario)
        if result is None:
            continue
        metrics = result.get("metrics", {})
        for what, key, unit in figures:
            value = _reference(metrics, key)
            if value is not None:
                rows.append(Row(scenario, None, what, _shown(value, unit), "", None))
    return rows


def render(results: Mapping[str, Mapping[str, Any]], charts: Sequence[str] = ()) -> str:
    """The Markdown page: machine and times, the table, then the `charts` (links)."""
    rows = evaluate(results)
    lines = ["# Benchmark summary", ""]
    if results:
        first = min(results.values(), key=lambda r: str(r.get("started_at", "")))
        m = first.get("machine", {})
        starts = sorted(str(r.get("started_at", "")) for r in results.values())
        lines += [
            f"Machine: {m.get('cores')} cores, {m.get('cpu')}, Python {m.get('python')}. "
            f"Runs started {starts[0]} to {starts[-1]} (UTC).",
            "",
        ]
    met = sum(1 for r in rows if r.met)
    with_target = sum(1 for r in rows if r.target)
    lines += [f"Targets met: {met} of {with_target}.", ""]
    lines += ["| scenario | issue | what | figure | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = (
            "" if not r.target else "not run" if r.met is None else "yes" if r.met else "**no**"
        )
        issue = f"#{r.issue}" if r.issue is not None else ""
        lines.append(f"| {r.scenario} | {issue} | {r.what} | {r.figure} | {r.target} | {verdict} |")
    if charts:
        lines.append("")
        lines += [f"![{Path(link).stem}]({link})" for link in charts]
    return "\n".join(lines) + "\n"


def _chart_links(directory: Path, prefix: str) -> list[str]:
    return [f"{prefix.rstrip('/')}/{p.name}" for p in sorted(directory.glob("*.png"))]


def load(directory: Path) -> dict[str, dict[str, Any]]:
    """The JSON results in `directory`, by file name (`fanout.json` -> `fanout`)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "scenario" in data and "metrics" in data:
            found[path.stem] = data
    return found


def report_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="actorflow bench report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", type=Path, help="where the scenarios' JSON files are")
    parser.add_argument(
        "--charts", default=None, help="a directory of charts (--plot) to link, as written"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the page here too")
    args = parser.parse_args(argv)
    results = load(args.directory)
    if not results:
        print(f"actorflow bench report: no results in {args.directory}", file=sys.stderr)
        return 2
    links = _chart_links(Path(args.charts), args.charts) if args.charts else []
    page = render(results, links)
    print(page, end="")
    if args.out is not None:
        args.out.write_text(page)
    return 0


def all_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="actorflow bench all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON, charts and summary.md")
    parser.add_argument("--only", nargs="+", default=None, help="these scenarios only")
    parser.add_argument("--no-plot", action="store_true", help="skip the charts")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    known = [name for name, _ in RUN_ORDER]
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {known}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, scenario_args in RUN_ORDER:
        if args.only and name not in args.only:
            continue
        command = [sys.executable, "-m", "actorflow", "bench", *scenario_args, "-q",
                   "--json", str(args.out / f"{name}.json")]  # fmt: skip
        if not args.no_plot and name in _CHARTED:
            command += ["--plot", str(args.out / "charts")]
        began = time.monotonic()
        if not args.quiet:
            print(f"[bench all] {name} ...", flush=True)
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            failed.append(name)
        if not args.quiet:
            print(
                f"[bench all] {name}: exit {code} in {time.monotonic() - began:.0f} s", flush=True
            )
    links = [] if args.no_plot else _chart_links(args.out / "charts", "charts")
    page = render(load(args.out), links)
    (args.out / "summary.md").write_text(page)
    if not args.quiet:
        print(page, end="")
    if failed:
        print(f"[bench all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
