"""An activity that runs longer than the sidecar's idle timeout (1 s here, 60 s by
default) completes, and its workflow with it.

The activity actor's mailbox is empty while its activity runs; the idle sweep used to
deactivate it after `--idle-timeout`, which cancelled the run: the outcome the app sent
later was dropped, and nothing ever told the workflow (it hung, RUNNING, until the next
placement change). Found with a 100 s activity on a default cluster."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest
from dapr.ext.workflow import WorkflowStatus

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "env": {"ACTORFLOW_SIDECAR_IDLE_TIMEOUT": "1"}}
ACTIVITY_S = 4.0  # four idle timeouts, a dozen sweeps


def active_actors(cluster: Any) -> int:
    with urllib.request.urlopen(f"{cluster.info['sidecars'][0]['http']}/metrics") as resp:
        text = resp.read().decode()
    found = re.search(r"^actorflow_actors_active (\d+)$", text, re.MULTILINE)
    assert found, text
    return int(found.group(1))


def test_an_activity_longer_than_the_idle_timeout_completes(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    iid = c.schedule_new_workflow("long_step", input=ACTIVITY_S, instance_id=uid("long"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == ACTIVITY_S
    # Idle actors still leave after the idle timeout: the sweep was not turned off.
    deadline = time.monotonic() + 30
    while active_actors(cluster):
        assert time.monotonic() < deadline, "actors stayed active long after their work"
        time.sleep(0.1)  # polling the sidecar's metrics, bounded
