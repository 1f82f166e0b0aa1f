"""GetInstance answers from a workflow state."""

from __future__ import annotations

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow import WorkflowState, scheduled_start_at
from sidecar.workflow.events import to_timestamp


def instance_response(state: WorkflowState | None, with_io: bool) -> pb.GetInstanceResponse:
    if state is None or not state.exists:
        return pb.GetInstanceResponse(exists=False)
    m = state.metadata
    ws = pb.WorkflowState(instanceId=state.instance_id, name=m.name)
    ws.workflowStatus = state.status  # type: ignore[assignment]  # an OrchestrationStatus value
    ws.createdTimestamp.CopyFrom(to_timestamp(m.created_ms))
    ws.lastUpdatedTimestamp.CopyFrom(to_timestamp(m.updated_ms or m.created_ms))
    start_at = scheduled_start_at(state)
    if start_at is not None:
        ws.scheduledStartTimestamp.CopyFrom(start_at)
    if m.completed_ms:
        ws.completedTimestamp.CopyFrom(to_timestamp(m.completed_ms))
    if m.execution_id:
        ws.executionId.value = m.execution_id
    if m.parent is not None:
        ws.parentInstanceId.value = m.parent.instance_id
    if with_io:
        _add_io(ws, state)
    if m.failure is not None:
        ws.failureDetails.ParseFromString(m.failure)
    return pb.GetInstanceResponse(exists=True, workflowState=ws)


def _add_io(ws: pb.WorkflowState, state: WorkflowState) -> None:
    """Input, output and custom status: only when the caller asks for payloads."""
    m = state.metadata
    if m.input is not None:
        ws.input.value = m.input
    if m.output is not None:
        ws.output.value = m.output
    if state.custom_status is not None:
        ws.customStatus.value = state.custom_status
