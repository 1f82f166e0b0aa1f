"""The workload of `actorflow bench scale` and the checks made after it.

`Workload` starts W `naps` workflows at once over the pairs' clients and awaits them;
`check_outputs`, `check_histories` and `activity_metrics` tell what came out: lost or
wrong workflows, histories that are not one completion per step, and activities run
more than once (read from the apps' nap log).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from bench.scale_pairs import Pairs

WAIT_CHUNK_S = 10


def expected_output(iid: str, steps: int) -> list[list[Any]]:
    return [[iid, step] for step in range(steps)]


class Workload:
    """W `naps` workflows started at once over the pairs' clients, and awaited."""

    def __init__(self, pairs: Pairs, workflows: int, steps: int, tag: str) -> None:
        self.pairs = pairs
        self.steps = steps
        self.ids = [f"naps-{tag}-{i:05d}" for i in range(workflows)]
        self.states: dict[str, Any] = {}
        self.finished_at: dict[str, float] = {}
        self.started_at = 0.0
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.states)

    def schedule(self, i: int) -> None:
        iid = self.ids[i]
        for attempt in range(20):
            try:
                self.pairs.client(i + attempt).schedule_new_workflow(
                    "naps", input=self.steps, instance_id=iid
                )
                return
            except Exception as exc:  # a sidecar going away: try another
                if attempt == 19:
                    raise RuntimeError(f"could not start {iid}: {exc!r}") from exc
                self.pairs.stopping.wait(0.2)

    def await_one(self, i: int, deadline: float) -> None:
        """Wait for one instance, moving to another sidecar when its own goes away."""
        iid = self.ids[i]
        attempt = i
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                state = self.pairs.client(attempt).wait_for_workflow_completion(
                    iid, timeout_in_seconds=max(1, int(min(WAIT_CHUNK_S, remaining)))
                )
            except TimeoutError:
                continue
            except Exception:  # the channel closed or the sidecar left: another one
                attempt += 1
                self.pairs.stopping.wait(0.1)
                continue
            if state is None:  # not found (yet): no hot loop
                self.pairs.stopping.wait(0.1)
                continue
            with self._lock:
                self.states[iid] = state
                self.finished_at[iid] = time.perf_counter()
            return

    def run(
        self,
        timeout_s: float,
        status: Callable[[str], None],
        beside: Callable[[], None] | None = None,
    ) -> float:
        """Start everything, wait for all (or the timeout); returns the wall time."""
        deadline = time.monotonic() + timeout_s
        n = len(self.ids)
        with ThreadPoolExecutor(max_workers=n + 2, thread_name_prefix="scale") as pool:
            self.started_at = time.perf_counter()
            list(pool.map(self.schedule, range(n)))
            futures: list[Future[None]] = [
                pool.submit(self.await_one, i, deadline) for i in range(n)
            ]
            if beside is not None:
                futures.append(pool.submit(beside))
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=5.0, return_when=FIRST_EXCEPTION)
                for f in finished:
                    f.result()  # a bug in the bench itself: raise it
                if pending:
                    elapsed = time.perf_counter() - self.started_at
                    naps = self.pairs.naps_done()
                    status(f"{self.done}/{n} workflows completed, {naps} naps run, {elapsed:.0f} s")
        if not self.finished_at:
            return timeout_s
        return max(self.finished_at.values()) - self.started_at


def nap_runs(log: Path) -> dict[tuple[str, int], list[int]]:
    """(instance id, step) -> the pids of the apps that ran it, in order."""
    runs: dict[tuple[str, int], list[int]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                iid, step = json.loads(fields[1])
                runs.setdefault((str(iid), int(step)), []).append(int(fields[2]))
    return runs


def check_outputs(work: Workload) -> tuple[list[str], list[str]]:
    """(lost: not COMPLETED, wrong: COMPLETED with another output)."""
    lost, wrong = [], []
    for iid in work.ids:
        state = work.states.get(iid)
        if state is None or state.runtime_status.name != "COMPLETED":
            lost.append(iid)
        elif json.loads(state.serialized_output or "null") != expected_output(iid, work.steps):
            wrong.append(iid)
    return lost, wrong


def check_histories(work: Workload) -> list[str]:
    """Instances whose history is not one ExecutionCompleted and one TaskCompleted per step."""
    anomalies = []
    for i, iid in enumerate(work.ids):
        events = work.pairs.client(i).get_workflow_history(iid)
        kinds = Counter(e.event_type.name for e in events)
        got = (kinds["EXECUTION_COMPLETED"], kinds["TASK_SCHEDULED"], kinds["TASK_COMPLETED"])
        if got != (1, work.steps, work.steps):
            anomalies.append(f"{iid}: completed/scheduled/task-completed = {got}")
    return anomalies


def activity_metrics(work: Workload) -> dict[str, Any]:
    """Executions of the workload's naps from the apps' shared log; each duplicated nap
    is attributed to `first app -> rerun app` (apps named by their sidecar)."""
    ids = set(work.ids)
    runs = {k: pids for k, pids in nap_runs(work.pairs.nap_log).items() if k[0] in ids}
    expected = {(iid, step) for iid in work.ids for step in range(work.steps)}
    app = work.pairs.app_names
    moves = Counter(
        f"{app.get(pids[0], pids[0])} -> {app.get(p, p)}"
        for pids in runs.values()
        for p in pids[1:]
    )
    return {
        "activity_executions": sum(len(pids) for pids in runs.values()),
        "duplicate_activities": sum(len(pids) - 1 for pids in runs.values()),
        "duplicates_by_app": dict(moves),
        "activities_by_app": dict(
            sorted(Counter(app.get(p, str(p)) for pids in runs.values() for p in pids).items())
        ),
        "missing_activity_records": len(expected - set(runs)),
    }
