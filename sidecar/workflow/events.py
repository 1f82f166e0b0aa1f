"""History event construction and inspection helpers (pure).

Every timestamp enters as integer milliseconds since the Unix epoch (`now_ms`), so the
engine never reads a clock. Events are the app-facing protocol's `HistoryEvent`
(wire-identical to the SDK's), the same bytes we keep at rest.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb

__all__ = [
    "MIN_TIMESTAMP_SECONDS",
    "NO_EVENT_ID",
    "OPTIONAL_TIMER_SECONDS",
    "child_completed_event",
    "child_failed_event",
    "client_raised_event",
    "due_ms",
    "event_kind",
    "execution_started_event",
    "failure_details",
    "is_client_stamped",
    "raised_event",
    "resumed_event",
    "stamped",
    "suspended_event",
    "task_completed_event",
    "task_failed_event",
    "terminated_event",
    "timer_fired_event",
    "timestamp_ms",
    "timestamp_problem",
    "to_timestamp",
]

# Events that are not the answer to an action carry no id of their own (Durable Task).
NO_EVENT_ID = -1

# The SDK backs an indefinite `wait_for_external_event` with an "optional" timer whose
# fireAt is 9999-12-31T23:59:59.999999999Z. Such a timer never fires: no reminder for it.
OPTIONAL_TIMER_SECONDS = 253402300799
# 0001-01-01T00:00:00Z: the earliest instant a protobuf Timestamp may hold, as 9999-12-31
# above is the last (protobuf refuses to convert one outside, to milliseconds and back).
MIN_TIMESTAMP_SECONDS = -62135596800


def to_timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def timestamp_problem(ts: Timestamp) -> str | None:
    """Why `ts`, from a client or an app, is not a valid protobuf Timestamp (None when it
    is): one outside years 1 to 9999 is stored, then refused by every conversion back,
    so an instance holding one could not even be shown."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= OPTIONAL_TIMER_SECONDS:
        return f"seconds {ts.seconds} outside 0001-01-01 to 9999-12-31"
    if not 0 <= ts.nanos <= 999_999_999:
        return f"nanos {ts.nanos} outside 0 to 999,999,999"
    return None


def timestamp_ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def due_ms(ts: Timestamp) -> int:
    """The first millisecond at or after `ts`: a time something is due. The SDK's timers
    carry microseconds (its clock plus a timedelta); one fired at `timestamp_ms`, rounded
    down, could show the workflow a clock up to 1 ms short of what it asked for."""
    return ts.seconds * 1000 + -(-ts.nanos // 1_000_000)


def event_kind(event: pb.HistoryEvent) -> str:
    """The name of the event's `eventType` oneof field ("" when unset)."""
    return event.WhichOneof("eventType") or ""


def _event(now_ms: int, event_id: int = NO_EVENT_ID) -> pb.HistoryEvent:
    return pb.HistoryEvent(eventId=event_id, timestamp=to_timestamp(now_ms))


def _set_optional(field: StringValue, value: str | None) -> None:
    if value is not None:
        field.value = value


def execution_started_event(
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input: str | None,
    now_ms: int,
    parent: pb.ParentInstanceInfo | None = None,
    router: pb.TaskRouter | None = None,
) -> pb.HistoryEvent:
    """What StartInstance (or a parent's createChildWorkflow) puts in the inbox."""
    event = _event(now_ms)
    started = event.executionStarted
    started.name = name
    started.workflowInstance.instanceId = instance_id
    started.workflowInstance.executionId.value = execution_id
    _set_optional(started.input, input)
    if parent is not None:
        started.parentInstance.CopyFrom(parent)
    if router is not None:
        event.router.CopyFrom(router)
    return event


def task_completed_event(
    task_id: int, result: str | None, now_ms: int, task_execution_id: str = ""
) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.taskCompleted.taskScheduledId = task_id
    event.taskCompleted.taskExecutionId = task_execution_id
    _set_optional(event.taskCompleted.result, result)
    return event


def task_failed_event(
    task_id: int, failure: pb.TaskFailureDetails, now_ms: int, task_execution_id: str = ""
) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.taskFailed.taskScheduledId = task_id
    event.taskFailed.taskExecutionId = task_execution_id
    event.taskFailed.failureDetails.CopyFrom(failure)
    return event


def timer_fired_event(timer_id: int, fire_at_ms: int, now_ms: int) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.timerFired.timerId = timer_id
    event.timerFired.fireAt.CopyFrom(to_timestamp(fire_at_ms))
    return event


def child_completed_event(task_id: int, result: str | None, now_ms: int) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.childWorkflowInstanceCompleted.taskScheduledId = task_id
    _set_optional(event.childWorkflowInstanceCompleted.result, result)
    return event


def child_failed_event(
    task_id: int, failure: pb.TaskFailureDetails, now_ms: int
) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.childWorkflowInstanceFailed.taskScheduledId = task_id
    event.childWorkflowInstanceFailed.failureDetails.CopyFrom(failure)
    return event


def raised_event(name: str, input: str | None, now_ms: int) -> pb.HistoryEvent:
    """An external event. The name is kept as given: matching it case-insensitively is
    the SDK's job."""
    event = _event(now_ms)
    event.eventRaised.name = name
    _set_optional(event.eventRaised.input, input)
    return event


def client_raised_event(name: str, input: str | None, arrival_ns: int) -> pb.HistoryEvent:
    """An external event a client raised, stamped with its request's arrival."""
    return stamped(raised_event(name, input, 0), arrival_ns)


def stamped(event: pb.HistoryEvent, arrival_ns: int) -> pb.HistoryEvent:
    """`event`, a client's request (a raise, a suspend, a resume), stamped with the
    request's arrival (`sidecar.engine.arrivals`: unique, never a whole millisecond),
    which tells a copy of the request sent again from another request
    (`is_client_stamped`)."""
    event.timestamp.FromNanoseconds(arrival_ns)
    return event


def is_client_stamped(event: pb.HistoryEvent) -> bool:
    """Whether the event carries a request's arrival stamp (`stamped`)."""
    return event.timestamp.nanos % 1_000_000 != 0


def terminated_event(output: str | None, now_ms: int, *, recurse: bool = False) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.executionTerminated.recurse = recurse
    _set_optional(event.executionTerminated.input, output)
    return event


def suspended_event(reason: str | None, now_ms: int) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.executionSuspended.SetInParent()
    _set_optional(event.executionSuspended.input, reason)
    return event


def resumed_event(reason: str | None, now_ms: int) -> pb.HistoryEvent:
    event = _event(now_ms)
    event.executionResumed.SetInParent()
    _set_optional(event.executionResumed.input, reason)
    return event


def failure_details(
    error_type: str, message: str, stack_trace: str | None = None
) -> pb.TaskFailureDetails:
    details = pb.TaskFailureDetails(errorType=error_type, errorMessage=message)
    _set_optional(details.stackTrace, stack_trace)
    return details
