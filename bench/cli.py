"""`actorflow bench <scenario>`: dispatch to the scenario modules in this package."""

from __future__ import annotations

import argparse
import importlib

# scenario -> module with `main(argv) -> int`
SCENARIOS: dict[str, str] = {
    "placement": "bench.placement_bench",
    "reminders": "bench.reminders_bench",
    "checkpoint": "bench.checkpoint_bench",
    "actors": "bench.actors_bench",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="actorflow bench",
        description="Run a benchmark scenario; `actorflow bench SCENARIO --help` for its options.",
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args, rest = parser.parse_known_args(argv[:1])
    module = importlib.import_module(SCENARIOS[args.scenario])
    result: int = module.main(argv[1:] + rest)
    return result
