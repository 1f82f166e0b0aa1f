"""PNG charts of a bench result (the JSON object of DESIGN.md section 7).

`plot(data, out_dir)` writes one or more charts for `data["scenario"]` and returns their
paths; `python -m bench.plots PATH.json [...] --out DIR` charts result files already
written. matplotlib is a dev dependency imported only when a chart is drawn, so the
benches run without it unless `--plot` is given. Figures are drawn on a bare
`matplotlib.figure.Figure` (Agg canvas, no pyplot state, no display), 800 x 500 px.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Result = Mapping[str, Any]
Chart = tuple[str, "Figure"]  # (file-name suffix, figure)

SIZE_IN = (8.0, 5.0)
DPI = 100
P50, P99, EXTRA = "#4c72b0", "#dd8452", "#55a868"


class PlotError(Exception):
    """A result that cannot be charted."""


class UnknownScenarioError(PlotError):
    pass


class MatplotlibMissingError(PlotError):
    pass


def matplotlib_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _figure(data: Result, title: str, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MatplotlibMissingError(
            "charts need matplotlib: pip install 'matplotlib>=3.8,<4' (in the dev extra)"
        ) from exc
    fig = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    fig.suptitle(title, fontsize=12)
    m = data.get("machine", {})
    fig.supxlabel(
        f"actorflow bench {data['scenario']}  |  {m.get('cores', '?')} cores, "
        f"{m.get('cpu', '?')}, Python {m.get('python', '?')}  |  {data.get('started_at', '?')}",
        fontsize=8,
        color="0.4",
    )
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    return fig, axes


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _log_scale(ax: Axes, *axes: str) -> None:
    """Log scale on "x" and/or "y", ticks written as plain numbers (0.3, 10, 1,000)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    plain = FuncFormatter(lambda value, _pos: _number(value))
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        getattr(ax, f"set_{name}scale")("log")
        if name == "y":  # values often span less than two decades: label 1, 2, 5 of each
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(FuncFormatter(lambda _value, _pos: ""))


def _bars(ax: Axes, labels: Sequence[str], values: Sequence[float], unit: str) -> None:
    colors = [P50, P99, EXTRA, "#8172b3", "#937860"]
    bars = ax.bar(labels, values, color=[colors[i % len(colors)] for i in range(len(values))])
    ax.bar_label(bars, labels=[_number(v) for v in values], fontsize=9)
    ax.set_ylabel(unit)
    ax.margins(y=0.15)


def _histogram(data: Result, samples: Sequence[float], what: str) -> Chart:
    from bench.report import percentile

    fig, (ax,) = _figure(data, f"{data['scenario']}: {what}, {len(samples)} samples")
    ax.hist(samples, bins=50, color=P50, alpha=0.85)
    for p, color in ((50, P99), (99, "#c44e52")):
        value = percentile(samples, p)
        ax.axvline(value, color=color, linestyle="--", label=f"p{p} {_number(value)} ms")
    ax.set_xlabel("ms")
    ax.set_ylabel("count")
    ax.legend()
    return "histogram", fig


def _with_histogram(data: Result, chart: Chart, what: str) -> list[Chart]:
    samples = data["metrics"].get("samples_ms")
    return [chart, _histogram(data, samples, what)] if samples else [chart]


# ---- one function per scenario shape: result -> charts


def _fanout(data: Result) -> list[Chart]:
    runs = data["metrics"]["runs"]
    n = [r["n"] for r in runs]
    fig, (rate, cpu) = _figure(data, "fanout: one workflow, N parallel activities", ncols=2)
    rate.plot(n, [r["activities_per_s"] for r in runs], "o-", color=P50)
    rate.set_ylabel("activities/s")
    cpu.plot(n, [r["sidecar_cpu_ms_per_activity"] for r in runs], "o-", color=P99, label="sidecar")
    floor = [r.get("ceiling_server_cpu_ms_per_activity") for r in runs]
    if all(f is not None for f in floor):
        cpu.plot(n, floor, "s--", color=P50, label="no-op server (sdk-ceiling)")
        cpu.legend()
    cpu.set_ylabel("CPU ms per activity")
    for ax in (rate, cpu):
        _log_scale(ax, "x")
        ax.set_xlabel("N (activities)")
        ax.set_ylim(bottom=0)
    return [("throughput", fig)]


def _chain(data: Result) -> list[Chart]:
    m, p = data["metrics"], data["params"]
    fig, (ax,) = _figure(
        data,
        f"chain: {p.get('workflows', '?')} workflows x {p.get('steps', '?')} activities, "
        f"{m['workflows_per_s']:.1f} workflows/s, {m['activities_per_s']:.0f} activities/s",
    )
    _bars(ax, ["workflow p50", "workflow p99"], [m["workflow_p50_ms"], m["workflow_p99_ms"]], "ms")
    return [("percentiles", fig)]


def _latency(data: Result) -> list[Chart]:
    m = data["metrics"]
    fig, (ax,) = _figure(data, "latency: one-activity workflow, start to completion")
    _bars(ax, ["p50", "p99", "mean"], [m["p50_ms"], m["p99_ms"], m["mean_ms"]], "ms")
    charts = _with_histogram(data, ("percentiles", fig), "workflow round trip")
    if "sdk_round_trips_ms" in m and "floor_p50_ms" in m:
        charts.append(("floor", _latency_floor(data)))
    return charts


def _latency_floor(data: Result) -> Figure:
    """p50 beside what it is held to: the SDK's three round trips, the target (1.3x
    them) and the same workflows against a server that keeps nothing."""
    m = data["metrics"]
    fig, (ax,) = _figure(data, "latency p50: the sidecar, a server that keeps nothing, the SDK")
    labels = ["SDK's 3 round trips", "server that keeps nothing", "sidecar"]
    _bars(ax, labels, [m["sdk_round_trips_ms"], m["floor_p50_ms"], m["p50_ms"]], "ms (p50)")
    target = 1.3 * m["sdk_round_trips_ms"]
    label = f"target: 1.3x the round trips, {_number(target)} ms"
    ax.axhline(target, color="#c44e52", linestyle="--", label=label)
    ax.legend()
    return fig


def _floor_only(data: Result) -> list[Chart]:
    m = data["metrics"]
    fig, (ax,) = _figure(data, "latency-floor: the latency workflow, a server that keeps nothing")
    _bars(ax, ["p50", "p99"], [m["floor_p50_ms"], m["floor_p99_ms"]], "ms")
    return [("percentiles", fig)]


def _actors(data: Result) -> list[Chart]:
    m = data["metrics"]
    # Older result files name the HTTP comparison `http_round_trip_*`.
    http = "http_api" if "http_api_p50_ms" in m else "http_round_trip"
    fig, (ax,) = _figure(data, f"actors: remote actor call, {m['calls_per_s']:.0f} calls/s")
    labels = ["router p50", "router p99"]
    values = [m["remote_call_p50_ms"], m["remote_call_p99_ms"]]
    if f"{http}_p50_ms" in m:
        labels += ["HTTP API p50", "HTTP API p99"]
        values += [m[f"{http}_p50_ms"], m[f"{http}_p99_ms"]]
    _bars(ax, labels, values, "ms")
    return _with_histogram(data, ("percentiles", fig), "remote call (router)")


def _sdk_ceiling(data: Result) -> list[Chart]:
    m = data["metrics"]
    if "turns_per_s" not in m:  # --activities-only
        fig, (rate,) = _figure(data, "sdk-ceiling: the Dapr SDK worker alone, activities")
        _bars(rate, ["activities/s"], [m["activities_per_s"]], "per s")
        return [("throughput", fig)]
    fig, (rate, rtt) = _figure(data, "sdk-ceiling: the Dapr SDK worker alone", ncols=2)
    _bars(rate, ["activities/s", "turns/s"], [m["activities_per_s"], m["turns_per_s"]], "per s")
    _bars(rtt, ["activity p50", "turn p50"], [m["activity_rtt_p50_ms"], m["turn_rtt_p50_ms"]],
          "round trip ms")  # fmt: skip
    return [("throughput", fig)]


def _engine(data: Result) -> list[Chart]:
    runs = data["metrics"]["runs"]
    fig, (cpu,) = _figure(data, "engine: CPU per activity in one process, no gRPC")
    labels = [f"N={r['n']}" for r in runs]
    _bars(cpu, labels, [r["cpu_us_per_activity"] for r in runs], "CPU us per activity")
    return [("cpu", fig)]


def _scale(data: Result) -> list[Chart]:
    m = data["metrics"]
    if "runs" not in m:  # --live: one run, sidecars added and removed
        fig, (ax,) = _figure(data, f"scale --live: activity executions by app, "
                             f"{m['duplicate_activities']} duplicated")  # fmt: skip
        by_app = m["activities_by_app"]
        _bars(ax, list(by_app), list(by_app.values()), "activity executions")
        return [("live", fig)]
    runs = m["runs"]
    n = [r["sidecars"] for r in runs]
    fig, (ax,) = _figure(data, f"scale: speedup {m['speedup']:.2f}x, largest over smallest")
    ax.plot(n, [r["workflows_per_s"] for r in runs], "o-", color=P50, label="measured")
    ax.plot(n, [r["ideal_workflows_per_s"] for r in runs], "--", color="0.5", label="ideal")
    ax.set_xticks(n)
    ax.set_xlabel("sidecar + app pairs")
    ax.set_ylabel("workflows/s")
    ax.set_ylim(bottom=0)
    ax.legend()
    return [("throughput", fig)]


def _placement(data: Result) -> list[Chart]:
    m, p = data["metrics"], data["params"]
    fig, (ax,) = _figure(
        data,
        f"placement: dissemination to {p.get('hosts', '?')} hosts, "
        f"{m.get('changes_measured', '?')} changes",
    )
    labels = ["p50", "p99", "max"]
    keys = [f"dissemination_{k}_ms" for k in labels]
    _bars(ax, labels, [m[k] for k in keys if k in m], "ms")
    ax.axhline(500, color="#c44e52", linestyle=":", label="target p99 500 ms")
    ax.legend(loc="upper left")
    return [("dissemination", fig)]


def _reminders(data: Result) -> list[Chart]:
    m = data["metrics"]
    fig, (rate, late) = _figure(data, "reminders", ncols=2)
    _bars(rate, ["register/s", "triggers/s\n(burst)"],
          [m["register_per_s"], m["triggers_per_s"]], "per s")  # fmt: skip
    groups = [("register", "register"), ("steady", "lateness"),
              ("burst", "burst_lateness"), ("failover", "failover_lateness")]  # fmt: skip
    groups = [(label, key) for label, key in groups if f"{key}_p50_ms" in m]
    x = range(len(groups))
    for offset, (p, color) in ((-0.2, ("p50", P50)), (0.2, ("p99", P99))):
        # A 0 ms lateness cannot be drawn on a log axis: show it at 0.1 ms.
        values = [max(m[f"{key}_{p}_ms"], 0.1) for _, key in groups]
        late.bar([i + offset for i in x], values, width=0.4, color=color, label=p)
    late.set_xticks(list(x), [label for label, _ in groups])
    _log_scale(late, "y")
    late.set_ylabel("ms (register: latency; others: lateness)")
    late.legend()
    return [("summary", fig)]


def _checkpoint(data: Result) -> list[Chart]:
    batches = data["metrics"]["batches"]
    stores = list(dict.fromkeys(b["store"] for b in batches))
    fig, axes = _figure(data, "checkpoint transaction vs raw client, p50", ncols=len(stores))
    for ax, store in zip(axes, stores, strict=True):
        rows = [b for b in batches if b["store"] == store]
        k = [b["events"] for b in rows]
        ax.plot(k, [b["checkpoint_p50_ms"] for b in rows], "o-", color=P50, label="checkpoint")
        ax.plot(k, [b["raw_p50_ms"] for b in rows], "s--", color=P99, label="raw")
        _log_scale(ax, "x", "y")
        ax.set_title(store)
        ax.set_xlabel("k (history events)")
        ax.set_ylabel("p50 ms")
        ax.legend()
    return [("p50", fig)]


def _locust(data: Result) -> list[Chart]:
    m = data["metrics"]
    fig, (ax,) = _figure(
        data,
        f"locust: {m['workflows_per_s']:.1f} workflows/s, {m['failures']} failures",
    )
    _bars(ax, ["p50", "p95", "p99"],
          [m["workflow_p50_ms"], m["workflow_p95_ms"], m["workflow_p99_ms"]],
          "workflow ms (start to terminal status)")  # fmt: skip
    return [("workflows", fig)]


def _machine(data: Result) -> list[Chart]:
    m = data["metrics"]
    fig, (ax,) = _figure(
        data,
        f"machine: time per CPU work unit, alone; {m['stalls']} stalls over "
        f"{data['params'].get('stall_ms', '?')} ms, slow {m['slow_fraction']:.1%}",
    )
    timeline = m.get("timeline") or []
    ax.plot([t for t, _ in timeline], [d for _, d in timeline], ",", color=P50)
    ax.axhline(m["unit_p50_ms"], color=P99, linestyle="--",
               label=f"median {_number(m['unit_p50_ms'])} ms")  # fmt: skip
    _log_scale(ax, "y")
    ax.set_xlabel("s into the run")
    ax.set_ylabel("ms per unit")
    ax.legend(loc="upper right")
    return [("timeline", fig)]


PLOTTERS: dict[str, Callable[[Result], list[Chart]]] = {
    "fanout": _fanout,
    "chain": _chain,
    "latency": _latency,
    "latency-floor": _floor_only,
    "actors": _actors,
    "sdk-ceiling": _sdk_ceiling,
    "engine": _engine,
    "scale": _scale,
    "placement": _placement,
    "reminders": _reminders,
    "checkpoint": _checkpoint,
    "locust": _locust,
    "machine": _machine,
}


def plot(data: Result, out_dir: Path, stem: str | None = None) -> list[Path]:
    """Write `<stem>-<chart>.png` files (stem: the scenario) into `out_dir`."""
    scenario = data.get("scenario")
    plotter = PLOTTERS.get(str(scenario))
    if plotter is None:
        raise UnknownScenarioError(
            f"unknown scenario {scenario!r}: charts exist for {', '.join(sorted(PLOTTERS))}"
        )
    charts = plotter(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, fig in charts:
        path = out_dir / f"{stem or scenario}-{suffix}.png"
        # No Software metadata: the same result gives the same bytes across versions.
        fig.savefig(path, format="png", metadata={"Software": None})
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plots", description="Chart bench result JSON files."
    )
    parser.add_argument("results", type=Path, nargs="+", metavar="PATH.json")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    for path in args.results:
        try:
            written = plot(json.loads(path.read_text()), args.out, stem=path.stem)
        except KeyError as exc:
            print(f"{path}: a field its chart needs is missing: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError, PlotError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        for out in written:
            print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
