"""How large one payload may be, given what one store transaction may carry.

A workflow's checkpoint is one transaction when it fits, and otherwise splits into
several (`checkpoint.plan_checkpoint`), but never below one row: every transaction
carries the instance's `metadata` row, which holds the input (and, once finished, the
output), beside at least one event row. So a workflow input appears twice in one
transaction (its ExecutionStarted row and the metadata row), and an activity result
once beside the input. With every event held to `payload_limit` bytes, any one of them
fits a transaction beside the metadata row:

    2 * payload_limit + RESERVE_BYTES <= max_bytes

RESERVE_BYTES leaves room for the keys and the rest of the metadata row (ids, name,
timestamps). With SQLite (64 MiB transactions) the limit is 32 MiB, far above the
sidecar's gRPC and HTTP payload limit (4 MiB), so it never binds; with etcd (1.5 MiB
requests by default) it is about 730 KiB.

What exceeds it:
- a start, a raised event, a termination's output, a suspend or resume reason:
  refused at the API (`RESOURCE_EXHAUSTED`, HTTP 413), nothing stored;
- an activity's result: the activity fails (`PayloadTooLarge`, not retriable), as the
  Dapr SDK fails an activity whose result is over the gRPC limit;
- anything else that makes a checkpoint impossible (a turn's output or custom status,
  an activity's input, a child's output, a large failure): the workflow fails with
  `PayloadTooLarge` and a message naming the row; its last saved state is kept.

A second limit is the largest message the sidecar sends the app (`--max-payload-bytes`,
4 MiB): a turn's work item carries the workflow's history (or, to an SDK that keeps it,
what is new of it), an activity's its input. A turn over it fails the workflow, an
activity over it fails the activity, both with `PayloadTooLarge`
(`sidecar.engine.apps.WorkItemTooLargeError`); neither is sent.
"""

from __future__ import annotations

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import StoreLimits
from sidecar.workflow.effects import TurnResult
from sidecar.workflow.events import failure_details
from sidecar.workflow.finish import fail_instance
from sidecar.workflow.state import WorkflowState

__all__ = [
    "PAYLOAD_ERROR_TYPE",
    "RESERVE_BYTES",
    "fit_activity_response",
    "payload_limit",
    "undeliverable_activity",
    "unsaveable",
]

RESERVE_BYTES = 16 * 1024
PAYLOAD_ERROR_TYPE = "PayloadTooLarge"


def payload_limit(limits: StoreLimits) -> int:
    """The largest serialized event (start, raised event, activity outcome...) that the
    store with `limits` always holds (see the module doc)."""
    return max((limits.max_bytes - RESERVE_BYTES) // 2, limits.max_bytes // 4)


def fit_activity_response(response: pb.ActivityResponse, limit: int) -> pb.ActivityResponse:
    """`response` itself when its result is within `limit` bytes; otherwise the same
    answer as a non-retriable `PayloadTooLarge` failure (the workflow sees a TaskFailed
    it may handle, instead of a result no checkpoint could hold)."""
    if not response.HasField("result"):
        return response
    value = response.result.value
    if len(value) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character: no encoding
        return response
    size = len(value.encode())
    if size <= limit:
        return response
    failed = pb.ActivityResponse(
        instanceId=response.instanceId,
        taskId=response.taskId,
        completionToken=response.completionToken,
    )
    failed.failureDetails.CopyFrom(
        failure_details(
            PAYLOAD_ERROR_TYPE,
            f"the activity's result is {size} bytes; this sidecar's state store holds "
            f"at most {limit} bytes per result",
        )
    )
    failed.failureDetails.isNonRetriable = True
    return failed


def undeliverable_activity(request: pb.ActivityRequest, reason: str) -> pb.ActivityResponse:
    """The answer for an activity whose request cannot be sent to the app, for `reason`
    (over the message limit): a non-retriable `PayloadTooLarge` failure of the activity,
    which the workflow sees as a TaskFailed it may handle."""
    failed = pb.ActivityResponse(
        instanceId=request.workflowInstance.instanceId, taskId=request.taskId
    )
    failed.failureDetails.CopyFrom(
        failure_details(PAYLOAD_ERROR_TYPE, f"the activity cannot be sent to the app: {reason}")
    )
    failed.failureDetails.isNonRetriable = True
    return failed


def unsaveable(saved: WorkflowState, reason: str, now_ms: int) -> TurnResult:
    """The instance FAILED from `saved` (its last saved state, maybe with events folded
    into its inbox since): a turn's outcome could not be saved, for `reason`. Only an
    ExecutionCompleted row and a small failure are added to what is stored, and the
    inbox is dropped, so this fits wherever `saved` did."""
    return fail_instance(
        saved, PAYLOAD_ERROR_TYPE, f"the workflow's state cannot be saved: {reason}", now_ms
    )
