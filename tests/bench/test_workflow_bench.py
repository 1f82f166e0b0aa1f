"""`actorflow bench chain|latency` end to end at a tiny size: a real cluster, the real
SDK app, repeated measurements summarised as medians with every repetition kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _bench(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "out.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", *args, "--json", str(out), "-q"],
        check=True, timeout=300,
    )  # fmt: skip
    data: dict[str, object] = json.loads(out.read_text())
    return data


def test_chain_repeated_reports_medians_and_each_repetition(tmp_path: Path) -> None:
    data = _bench(tmp_path, "chain", "--workflows", "3", "--steps", "2", "--repeat", "2")
    assert data["params"] == {
        "sidecars": 1, "store": "sqlite", "app": "bench/bench_app.py", "repeat": 2,
        "workflows": 3, "steps": 2,
    }  # fmt: skip
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    reps = metrics["repetitions"]
    assert len(reps) == 2
    for key in ("workflows_per_s", "activities_per_s", "workflow_p50_ms", "workflow_p99_ms"):
        values = sorted(rep[key] for rep in reps)
        assert all(v > 0 for v in values)
        assert metrics[key] == round((values[0] + values[1]) / 2, 3)


def test_latency_repeated_keeps_every_sample(tmp_path: Path) -> None:
    data = _bench(tmp_path, "latency", "--count", "4", "--repeat", "2", "--no-ceiling")
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    assert len(metrics["samples_ms"]) == 8
    assert len(metrics["repetitions"]) == 2
    assert min(metrics["samples_ms"]) <= metrics["p50_ms"] <= max(metrics["samples_ms"])
    for rep in metrics["repetitions"]:
        sides = [rep[f"{side}_cpu_ms_per_workflow"] for side in ("sidecar", "app", "client")]
        assert all(cpu >= 0 for cpu in sides)
        assert rep["cpu_ms_per_workflow"] == round(sum(sides), 3)
    # Eight workflows cost the three processes some ticks of 10 ms between them.
    assert sum(rep["cpu_ms_per_workflow"] for rep in metrics["repetitions"]) > 0


def test_fanout_on_etcd(tmp_path: Path) -> None:
    """The same scenario on the multi-machine store (a 3-member etcd cluster)."""
    data = _bench(tmp_path, "fanout", "--n", "200", "--repeat", "1", "--no-ceiling",
                  "--store", "etcd")  # fmt: skip
    params = data["params"]
    assert isinstance(params, dict) and params["store"] == "etcd"
    metrics = data["metrics"]
    assert isinstance(metrics, dict)
    [run] = metrics["runs"]
    assert run["n"] == 200 and run["activities_per_s"] > 0
