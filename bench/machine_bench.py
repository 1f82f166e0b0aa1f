"""`actorflow bench machine`: how steady this machine's CPU is, with nothing of ours running.

Every latency tail in the other scenarios is read against this. One thread repeats a
fixed unit of pure-Python arithmetic (no I/O, no allocation worth the name, no other
thread) for `--seconds` and times every unit. On a steady machine each unit takes about
the same time. A unit that takes much longer means the CPU was taken away (the host
descheduled the vCPU, another tenant shared its core, an interrupt storm) or ran
slower for a while. Nothing in this process can cause it.

A second probe sleeps 1 ms at a time and records how late each wake-up is: how long a
thread that only wants a sliver of CPU waits for it.

Reported (`--json` per DESIGN.md section 7, with the unit timeline for `--plot`):
- `unit_p50_ms`, `unit_p99_ms`, `unit_max_ms`: time per work unit;
- `slow_fraction`: share of units over `--slow-ratio` x the median;
- `stalls`: units that lost over `--stall-ms` beyond the median (the CPU was gone for
  that long), `stall_max_ms`, and `stall_interval_p50_s`: the median time between
  clusters of slow units;
- `slow_ms_per_s`: time lost to slow units, per second of run;
- `wake_late_p50_ms`, `wake_late_p99_ms`, `wake_late_max_ms`: the sleep probe.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.report import add_common_args, emit, now_iso, percentile, result

__all__ = ["MachineReport", "analyse", "main", "probe_units", "probe_wakeups"]

# A unit is sized to take about 1 ms here: long against the timer's resolution, short
# against the stalls it is meant to see.
UNIT_LOOPS = 2_000
UNITS_PER_SAMPLE = 10


@dataclass(frozen=True, slots=True)
class MachineReport:
    units: int
    unit_p50_ms: float
    unit_p99_ms: float
    unit_max_ms: float
    slow_fraction: float
    stalls: int
    stall_max_ms: float
    clusters: int
    stall_interval_p50_s: float
    slow_ms_per_s: float

    def metrics(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "unit_p50_ms": self.unit_p50_ms,
            "unit_p99_ms": self.unit_p99_ms,
            "unit_max_ms": self.unit_max_ms,
            "slow_fraction": self.slow_fraction,
            "stalls": self.stalls,
            "stall_max_ms": self.stall_max_ms,
            "slow_clusters": self.clusters,
            "stall_interval_p50_s": self.stall_interval_p50_s,
            "slow_ms_per_s": self.slow_ms_per_s,
        }


def analyse(
    samples: Sequence[tuple[float, float]],
    *,
    slow_ratio: float = 1.5,
    stall_ms: float = 5.0,
    cluster_gap_s: float = 0.1,
) -> MachineReport:
    """Summarise `(start_s, duration_ms)` samples of equal work, in time order.

    A sample is slow above `slow_ratio` x the median duration; a stall when it lost more
    than `stall_ms` over the median. Slow samples less than `cluster_gap_s` apart form one
    cluster; `stall_interval_p50_s` is the median gap between the starts of consecutive
    clusters (0 with fewer than two)."""
    if not samples:
        raise ValueError("no samples to analyse")
    durations = [d for _, d in samples]
    median = percentile(durations, 50)
    slow = [(t, d) for t, d in samples if d > slow_ratio * median]
    stalls = [d - median for _, d in samples if d - median > stall_ms]
    starts: list[float] = []
    last = float("-inf")
    for t, _ in slow:
        if t - last > cluster_gap_s:
            starts.append(t)
        last = t
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    span = samples[-1][0] - samples[0][0] + samples[-1][1] / 1000
    lost = sum(d - median for _, d in slow)
    return MachineReport(
        units=len(samples),
        unit_p50_ms=median,
        unit_p99_ms=percentile(durations, 99),
        unit_max_ms=max(durations),
        slow_fraction=len(slow) / len(samples),
        stalls=len(stalls),
        stall_max_ms=max(stalls, default=0.0),
        clusters=len(starts),
        stall_interval_p50_s=percentile(gaps, 50),
        slow_ms_per_s=lost / span if span > 0 else 0.0,
    )


def _unit() -> int:
    total = 0
    for i in range(UNIT_LOOPS):
        total += i * i
    return total


def probe_units(seconds: float) -> list[tuple[float, float]]:
    """Time `UNITS_PER_SAMPLE` work units at a time for `seconds`: (start_s, ms).

    The cyclic garbage collector is off meanwhile, so that none of its passes counts as
    the machine's."""
    samples: list[tuple[float, float]] = []
    clock = time.perf_counter
    enabled = gc.isenabled()
    gc.disable()
    try:
        begin = clock()
        while (start := clock()) - begin < seconds:
            for _ in range(UNITS_PER_SAMPLE):
                _unit()
            samples.append((start - begin, (clock() - start) * 1000))
    finally:
        if enabled:
            gc.enable()
    return samples


def probe_wakeups(seconds: float, sleep_s: float = 0.001) -> list[float]:
    """How late (ms) each `sleep_s` sleep ends, for `seconds`."""
    late: list[float] = []
    clock = time.perf_counter
    begin = clock()
    while (start := clock()) - begin < seconds:
        time.sleep(sleep_s)
        late.append(max(0.0, (clock() - start - sleep_s) * 1000))
    return late


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actorflow bench machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each probe")
    p.add_argument("--slow-ratio", type=float, default=1.5)
    p.add_argument("--stall-ms", type=float, default=5.0)
    return add_common_args(p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.seconds <= 0:
        raise SystemExit("actorflow bench machine: --seconds must be positive")
    started = now_iso()
    samples = probe_units(args.seconds)
    report = analyse(samples, slow_ratio=args.slow_ratio, stall_ms=args.stall_ms)
    late = probe_wakeups(args.seconds)
    metrics: dict[str, Any] = {
        **report.metrics(),
        "wake_late_p50_ms": percentile(late, 50),
        "wake_late_p99_ms": percentile(late, 99),
        "wake_late_max_ms": max(late, default=0.0),
        "timeline": [[round(t, 4), round(d, 4)] for t, d in samples],
    }
    params = {
        "seconds": args.seconds,
        "slow_ratio": args.slow_ratio,
        "stall_ms": args.stall_ms,
        "unit_loops": UNIT_LOOPS * UNITS_PER_SAMPLE,
    }
    return result("machine", params, metrics, started)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emit(run(args), args.json, args.quiet, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
