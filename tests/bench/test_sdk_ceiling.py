"""`actorflow bench sdk-ceiling --activities-only`: what `bench fanout` measures before
each N, with the real SDK app against the no-op server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.workflow_bench import ceiling_activities_per_s


def test_the_activities_only_ceiling_runs_the_sdk_app(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    subprocess.run(
        [sys.executable, "-m", "actorflow", "bench", "sdk-ceiling", "--n", "100",
         "--rtt", "0", "--activities-only", "--json", str(out), "-q"],
        check=True, timeout=120,
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["params"]["activities_only"] is True
    assert set(data["metrics"]) == {"activities_per_s"}
    assert data["metrics"]["activities_per_s"] > 0
    assert ceiling_activities_per_s(100) > 0  # what `bench fanout` calls before each N
