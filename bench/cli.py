"""`actorflow bench <scenario>`: dispatch to the scenario modules in this package."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import FrameType

# scenario -> module with `main(argv) -> int` (or "module:function")
SCENARIOS: dict[str, str] = {
    "fanout": "bench.workflow_bench:fanout_main",
    "chain": "bench.workflow_bench:chain_main",
    "latency": "bench.workflow_bench:latency_main",
    "latency-floor": "bench.latency_floor",
    "sdk-ceiling": "bench.sdk_ceiling",
    "engine": "bench.engine_bench",
    "scale": "bench.scale_bench",
    "locust": "bench.locust_bench",
    "placement": "bench.placement_bench",
    "reminders": "bench.reminders_bench",
    "checkpoint": "bench.checkpoint_bench",
    "actors": "bench.actors_bench",
    "machine": "bench.machine_bench",
    "report": "bench.summary:report_main",
    "all": "bench.summary:all_main",
}


def _stop(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C: every scenario's `finally` stops the cluster it
    # started, instead of leaving its processes running without the bench.
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(
        prog="actorflow bench",
        description="Run a benchmark scenario; `actorflow bench SCENARIO --help` for its options. "
        "`all` runs every scenario and writes a summary; `report DIR` summarises results.",
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args, rest = parser.parse_known_args(argv[:1])
    module_name, _, function = SCENARIOS[args.scenario].partition(":")
    module = importlib.import_module(module_name)
    result: int = getattr(module, function or "main")(argv[1:] + rest)
    return result
