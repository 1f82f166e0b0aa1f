"""The engine's metrics and their Prometheus text."""

from __future__ import annotations

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.metrics import EngineMetrics, Histogram


def test_a_histogram_counts_into_cumulative_buckets() -> None:
    h = Histogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.002, 0.05, 3.0):
        h.observe(value)
    assert h.lines("x") == [
        "# TYPE x histogram",
        'x_bucket{le="0.001"} 2',  # a bound is inclusive (le)
        'x_bucket{le="0.01"} 3',
        'x_bucket{le="0.1"} 4',
        'x_bucket{le="+Inf"} 5',
        "x_sum 3.053500",
        "x_count 5",
    ]
    with pytest.raises(ValueError, match="ascend"):
        Histogram((0.1, 0.01))


def test_finished_instances_by_status_with_the_usual_ones_always_shown() -> None:
    m = EngineMetrics()
    lines = m.lines()
    assert 'actorflow_workflows_finished_total{status="COMPLETED"} 0' in lines
    m.finished_with(pb.ORCHESTRATION_STATUS_COMPLETED)
    m.finished_with(pb.ORCHESTRATION_STATUS_COMPLETED)
    m.finished_with(pb.ORCHESTRATION_STATUS_CANCELED)
    m.started = 3
    lines = m.lines()
    assert "actorflow_workflows_started_total 3" in lines
    finished = [line for line in lines if line.startswith("actorflow_workflows_finished_total")]
    assert finished == [
        'actorflow_workflows_finished_total{status="COMPLETED"} 2',
        'actorflow_workflows_finished_total{status="FAILED"} 0',
        'actorflow_workflows_finished_total{status="TERMINATED"} 0',
        'actorflow_workflows_finished_total{status="CANCELED"} 1',
    ]
