"""The live scaling run of `actorflow bench scale --live`, small: 40 workflows of 20 naps
on 2 sidecar+app pairs; a pair is added after 15% of the naps and one of the first two
removed after half. No workflow may be lost, and each must complete once with its own
output (duplicated activity executions are allowed: activities run at least once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale_bench import build_parser, live

pytestmark = pytest.mark.slow

WORKFLOWS = 40
STEPS = 20


def test_no_workflow_is_lost_while_a_pair_joins_and_one_leaves(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--live", f"--workflows={WORKFLOWS}", f"--steps={STEPS}", "--timeout=120", "-q"]
    )
    metrics, ok = live(args, tmp_path)
    logs = f"logs under {tmp_path}: {metrics}"
    assert metrics["lost"] == [], logs
    assert metrics["wrong_output"] == [], logs
    assert metrics["history_anomalies"] == [], logs
    assert metrics["completed"] == WORKFLOWS
    assert metrics["missing_activity_records"] == 0, logs
    assert ok
    # The scaling happened while workflows ran, not after.
    assert metrics["added"] == "sidecar-2"
    assert metrics["removed"] == "sidecar-0"
    assert metrics["removed_after_naps"] < WORKFLOWS * STEPS, logs
    print(
        f"\n{WORKFLOWS} workflows x {STEPS} naps: {metrics['duplicate_activities']} "
        f"duplicated activity executions {metrics['duplicates_by_app']}"
    )
