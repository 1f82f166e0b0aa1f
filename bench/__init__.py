"""Benchmark scenarios behind `actorflow bench` (DESIGN.md section 7).

- `cli`: the scenario registry; `report`: machine facts, percentiles, the JSON result,
  the printed table and `--json/--plot/-q`; `plots`: PNG charts.
- Scenarios: `placement_bench` (+ `placement_sim`, the simulated hosts),
  `reminders_bench`, `actors_bench`, `checkpoint_bench`, `sdk_ceiling`, `workflow_bench`
  (fanout, chain, latency), `scale_bench` (+ `scale_pairs`, the sidecar/app pairs, and
  `scale_workload`, the workflows and their checks), `locust_bench` (+ `locustfile`).
- `bench_app`: the Dapr SDK app the workflow benches run; `ring_lookup`: ring speed.
- Results: `RESULTS.md` and `charts/`.
"""

from __future__ import annotations

__all__: list[str] = []
