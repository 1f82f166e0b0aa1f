"""What the workflow engine counts, for `/metrics` (Prometheus text format).

One `EngineMetrics` per sidecar, owned by its event loop: the workflow actors update it
with plain attribute changes (no lock, nothing on another thread), and the HTTP
`/metrics` route renders it. Counts are of this sidecar's actors since it started."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb

__all__ = ["CHECKPOINT_BUCKETS_S", "EngineMetrics", "Histogram", "samples"]

# A checkpoint is one store transaction: ~0.3 ms on a quiet SQLite, ms on etcd, up to
# hundreds of ms when the disk stalls.
CHECKPOINT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_STATUS_PREFIX = "ORCHESTRATION_STATUS_"


def samples(text: str) -> dict[str, float]:
    """What a `/metrics` text says: each sample's name (its labels included) and value;
    comments and lines without a number are skipped. For the tools that read a sidecar."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name and not name.startswith("#"):
            try:
                found[name] = float(value)
            except ValueError:
                continue
    return found


@dataclass(slots=True)
class Histogram:
    """Observations counted into fixed buckets (upper bounds, ascending)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError("histogram bounds must ascend")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out += [
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {self.count}",
        ]
        return out


@dataclass(slots=True)
class EngineMetrics:
    started: int = 0  # instances started here (new ones, children, reruns, reused ids)
    finished: dict[str, int] = field(default_factory=dict)  # by terminal status
    checkpoint_s: Histogram = field(default_factory=lambda: Histogram(CHECKPOINT_BUCKETS_S))
    # Checkpoint writes the store refused (out of reach, a full disk): each is written
    # again after a backoff (`WorkflowRunner._save_until_taken`). Rising, the store
    # needs looking at.
    checkpoint_failures: int = 0

    def finished_with(self, status: int) -> None:
        name = pb.OrchestrationStatus.Name(status).removeprefix(_STATUS_PREFIX)
        self.finished[name] = self.finished.get(name, 0) + 1

    def lines(self) -> list[str]:
        out = [
            "# TYPE actorflow_workflows_started_total counter",
            f"actorflow_workflows_started_total {self.started}",
            "# TYPE actorflow_workflows_finished_total counter",
        ]
        # The three usual ones always (a rate needs the zero), then any other seen.
        for status in dict.fromkeys(("COMPLETED", "FAILED", "TERMINATED", *sorted(self.finished))):
            count = self.finished.get(status, 0)
            out.append(f'actorflow_workflows_finished_total{{status="{status}"}} {count}')
        out += self.checkpoint_s.lines("actorflow_workflow_checkpoint_seconds")
        out += [
            "# TYPE actorflow_workflow_checkpoint_failures_total counter",
            f"actorflow_workflow_checkpoint_failures_total {self.checkpoint_failures}",
        ]
        return out
