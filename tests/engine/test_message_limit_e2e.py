"""A turn whose work item is over the largest message the sidecar sends the app
(`--max-payload-bytes`, here 256 KiB): a workflow whose 100,000-byte input travels on
as an activity's input and comes back as its result, so that the turn after the
activity carries at least 200,000 bytes of new history (300,000 with all of it), while
every message the app and the client send stays under the limit.

Before: gRPC refused to send the turn and ended the app's stream; the app reconnected,
the turn went back to the queue and out again, about fifty times a second for ever,
with a traceback each time in the sidecar's log, and the app's other work waited behind
it. Now the workflow fails with `PayloadTooLarge`, nothing is sent, and the app goes
on."""

from __future__ import annotations

import json
from typing import Any

from dapr.ext.workflow import WorkflowStatus

LIMIT = 256 * 1024
CLUSTER = {"sidecars": 1, "env": {"ACTORFLOW_SIDECAR_MAX_PAYLOAD_BYTES": str(LIMIT)}}
TURNS = "actorflow_workflow_work_items_total"
REFUSED = "actorflow_work_items_refused_total"


def test_a_turn_over_the_message_limit_fails_its_workflow_once(cluster: Any, uid: Any) -> None:
    c = cluster.client()
    before = cluster.metric(TURNS)
    iid = c.schedule_new_workflow("echo_through", input="x" * 100_000, instance_id=uid("over"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "PayloadTooLarge"
    assert f"over this sidecar's limit of {LIMIT} bytes" in state.failure_details.message
    # The first turn went out; the second was refused here once, not sent again and again.
    assert cluster.metric(TURNS) - before == 1
    assert cluster.metric(REFUSED) == 1

    # The app was never cut off: its other work runs, under the limit.
    under = c.schedule_new_workflow("echo_through", input="y" * 50_000, instance_id=uid("under"))
    state = c.wait_for_workflow_completion(under, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == 50_000
