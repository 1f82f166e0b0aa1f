"""The workflow engine's pure core (no asyncio, grpc, time, os, uuid or random).

Time (`now_ms`) and everything else come in as arguments; decisions go out as values
(new states, effects, planned transactions). The workflow and activity actors are the
shell: they load, call these functions, save, and carry out the effects.

What lives where:
- `state`: `WorkflowState` (history, inbox, generation, metadata, derived status) and
  `child_instances` (what a recursive purge reaches).
- `intake`: `add_events`, the idempotent intake of events (duplicates, copies of a
  client's request and stale work dropped).
- `copies`: how a client's request sent again is known (arrival stamps, and the marks
  a continue-as-new keeps of the requests its history took).
- `turn`: `plan_turn` (the WorkflowRequest for the app), `apply_response` (the app's
  actions into history events and effects), `pending_work` (recovery from the store).
- `finish`: completion, failure, `settle` (termination without the app, recursive
  termination of children), `continue_as_new`.
- `actions`: one SDK action <-> its history event <-> its effect.
- `effects`: the effect types and `TurnResult`.
- `checkpoint`: store keys, `plan_checkpoint` (chunked, metadata-guarded transactions),
  `load_state`, metadata encoding.
- `activity`: the activity actor's state and its completion.
- `rerun`: `rerun_from` (RerunWorkflowFromEvent).
- `limits`: how large a payload may be for the store (`payload_limit`), and what
  happens to one that is larger.
- `events`: constructors of the history events the shell feeds in.
- `errors`: `WorkflowError` and its subclasses.
"""

from __future__ import annotations

from sidecar.workflow.activity import (
    ACTIVITY_STATE_KEY,
    ActivityState,
    ActivityStatus,
    accept_dispatch,
    complete,
    decode_activity,
    encode_activity,
    new_activity,
    recover,
)
from sidecar.workflow.checkpoint import (
    CUSTOM_STATUS_KEY,
    METADATA_KEY,
    CheckpointPlan,
    Finished,
    StoredLayout,
    Transaction,
    history_key,
    inbox_key,
    keys_to_load,
    layout_of,
    load_finished,
    load_state,
    plan_checkpoint,
    store_key,
)
from sidecar.workflow.effects import (
    Completed,
    DispatchActivity,
    Effect,
    NotifyParent,
    NotifyWorkflow,
    RunTurn,
    ScheduleStart,
    ScheduleTimer,
    SendEvent,
    StartChild,
    TerminateInstance,
    TurnResult,
    activity_actor_id,
)
from sidecar.workflow.errors import (
    CheckpointTooLargeError,
    CorruptStateError,
    InvalidResponseError,
    RerunError,
    StaleTurnError,
    WorkflowError,
)
from sidecar.workflow.events import (
    execution_started_event,
    raised_event,
    resumed_event,
    suspended_event,
    task_completed_event,
    task_failed_event,
    terminated_event,
    timer_fired_event,
)
from sidecar.workflow.finish import (
    CHILD_REFUSED_ERROR_TYPE,
    INVALID_RESPONSE_ERROR_TYPE,
    child_not_started,
    continue_as_new,
    fail_instance,
    failed_answer,
    settle,
)
from sidecar.workflow.intake import add_events, inbox_kind
from sidecar.workflow.limits import (
    PAYLOAD_ERROR_TYPE,
    fit_activity_response,
    payload_limit,
    unsaveable,
)
from sidecar.workflow.rerun import rerun_from
from sidecar.workflow.state import (
    TERMINAL_STATUSES,
    Metadata,
    OpenWork,
    ParentInfo,
    WorkflowState,
    child_instances,
    new_state,
)
from sidecar.workflow.turn import (
    AppTurn,
    apply_response,
    pending_work,
    plan_turn,
    scheduled_start,
    scheduled_start_at,
    start_at_ms,
)

__all__ = [
    "ACTIVITY_STATE_KEY",
    "CHILD_REFUSED_ERROR_TYPE",
    "CUSTOM_STATUS_KEY",
    "INVALID_RESPONSE_ERROR_TYPE",
    "METADATA_KEY",
    "PAYLOAD_ERROR_TYPE",
    "TERMINAL_STATUSES",
    "ActivityState",
    "ActivityStatus",
    "AppTurn",
    "CheckpointPlan",
    "CheckpointTooLargeError",
    "Completed",
    "CorruptStateError",
    "DispatchActivity",
    "Effect",
    "Finished",
    "InvalidResponseError",
    "Metadata",
    "NotifyParent",
    "NotifyWorkflow",
    "OpenWork",
    "ParentInfo",
    "RerunError",
    "RunTurn",
    "ScheduleStart",
    "ScheduleTimer",
    "SendEvent",
    "StaleTurnError",
    "StartChild",
    "StoredLayout",
    "TerminateInstance",
    "Transaction",
    "TurnResult",
    "WorkflowError",
    "WorkflowState",
    "accept_dispatch",
    "activity_actor_id",
    "add_events",
    "apply_response",
    "child_instances",
    "child_not_started",
    "complete",
    "continue_as_new",
    "decode_activity",
    "encode_activity",
    "execution_started_event",
    "fail_instance",
    "failed_answer",
    "fit_activity_response",
    "history_key",
    "inbox_key",
    "inbox_kind",
    "keys_to_load",
    "layout_of",
    "load_finished",
    "load_state",
    "new_activity",
    "new_state",
    "payload_limit",
    "pending_work",
    "plan_checkpoint",
    "plan_turn",
    "raised_event",
    "recover",
    "rerun_from",
    "resumed_event",
    "scheduled_start",
    "scheduled_start_at",
    "settle",
    "start_at_ms",
    "store_key",
    "suspended_event",
    "task_completed_event",
    "task_failed_event",
    "terminated_event",
    "timer_fired_event",
    "unsaveable",
]
