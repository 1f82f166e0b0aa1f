"""A short locust run through `actorflow bench locust` (bench/locust_bench.py): a
2-sidecar cluster with the example app, a handful of users for about ten seconds, and
every workflow started must have completed with the right output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.locust_bench import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust not installed"),
]


def test_short_locust_run_completes_every_workflow(tmp_path: Path) -> None:
    out, summary = tmp_path / "locust", tmp_path / "summary.json"
    # Generous per-workflow deadline: the run must pass on a loaded 2-core machine.
    rc = main(["--users", "4", "--spawn-rate", "2", "--duration", "10", "--sidecars", "2",
               "--deadline-s", "120", "--out", str(out), "--json", str(summary), "-q"])  # fmt: skip
    ledger = json.loads((out / "workflows.json").read_text())
    assert rc == 0, ledger["errors"]

    assert ledger["failed"] == 0, ledger["errors"]
    assert ledger["started"] > 0
    assert ledger["completed"] == ledger["started"], ledger
    # Every user opened its accounts and checked the balances when it stopped.
    assert ledger["by_type"]["bank_open"]["completed"] == 2 * 4
    assert ledger["by_type"]["bank_balances"]["completed"] == 4

    data = json.loads(summary.read_text())
    assert data["scenario"] == "locust"
    metrics = data["metrics"]
    assert metrics["failures"] == 0
    assert metrics["requests"] > 0
    assert metrics["workflows_completed"] == ledger["completed"]
    for name in ("workflows_per_s", "workflow_p50_ms", "workflow_p95_ms", "workflow_p99_ms"):
        assert metrics[name] > 0

    # locust's own files: its JSON and CSV carry the WORKFLOW entries beside the HTTP calls.
    entries = json.loads((out / "locust.json").read_text())
    workflows = {e["name"]: e for e in entries if e["method"] == "WORKFLOW"}
    assert sum(e["num_requests"] for e in workflows.values()) == ledger["started"]
    assert "WORKFLOW,fan_out_fan_in" in (out / "locust_stats.csv").read_text() or (
        "fan_out_fan_in" not in ledger["by_type"]
    )
