"""A client's wait outlives the sidecar that held it: the instance's owner is SIGKILLed
while a client of another sidecar waits on it; the instance moves, and the wait is
answered by its next owner (harness: conftest.py, 2 sidecars, an SDK app beside each)."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow


def test_a_wait_held_by_a_sidecar_that_dies_is_answered_by_the_next_owner(
    cluster: Any, uid: Any
) -> None:
    client = cluster.client(0)
    with ThreadPoolExecutor(1) as pool:
        # Start instances until one lives on sidecar 1 while its client waits through 0.
        for attempt in range(40):
            iid = client.schedule_new_workflow("waits", instance_id=uid(f"orphan{attempt}"))
            waiting: Future[Any] = pool.submit(
                client.wait_for_workflow_completion, iid, timeout_in_seconds=90
            )
            if cluster.held_waits(1) == [0, 1]:
                break
            client.raise_workflow_event(iid, "release", data="not this one")
            waiting.result(timeout=30)
        else:
            pytest.fail("no instance landed on sidecar 1 in 40 tries")
        os.kill(cluster.info["sidecars"][1]["pid"], signal.SIGKILL)
        client.raise_workflow_event(iid, "release", data="after the kill")
        state = waiting.result(timeout=90)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "after the kill"
