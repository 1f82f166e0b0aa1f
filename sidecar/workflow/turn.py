"""One orchestrator turn: what to send to the app, and what its answer changes.

The shell's loop for a workflow actor, after `add_events`:

    result = settle(state, now)               # a termination needs no app turn
    turn = plan_turn(state, now)              # None: nothing for the app to do
    response = await app(turn.request, turn.past)  # events may be added meanwhile
    result = apply_response(state, turn, response, now)
    checkpoint(result.state); carry out result.effects; plan again

`plan_turn` gives the app the history as `pastEvents` (`turn.past`, kept apart from
`turn.request` so that the committed history is not copied into a message on every turn:
the app connection adds it, or only the part an app does not hold yet, when the turn is
sent; `turn.full_request()` is the whole request) and, as `newEvents`, a
WorkflowStarted stamped `now_ms` (or the due time of a timer it delivers, if later)
followed by the longest inbox prefix the app can act on. While suspended, events stay
in the inbox; once a resume arrives, everything up to it goes to the app in arrival
order, suspend and resume included, so the SDK buffers and releases exactly as it will
on every later replay.

`apply_response` moves the delivered prefix into the history, appends one event per
action (eventId = action id), and returns effects: N scheduleTask actions give N
`DispatchActivity` in one result (fan-out is never one by one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.actions import effect_for, is_recorded, record_action
from sidecar.workflow.effects import (
    Effect,
    RunTurn,
    ScheduleStart,
    TerminateInstance,
    TurnResult,
)
from sidecar.workflow.errors import InvalidResponseError, StaleTurnError, WorkflowError
from sidecar.workflow.events import (
    due_ms,
    event_kind,
    terminated_event,
    timestamp_problem,
    to_timestamp,
)
from sidecar.workflow.finish import continue_as_new, finish, notify_parent
from sidecar.workflow.state import WorkflowState

__all__ = [
    "AppTurn",
    "apply_response",
    "pending_work",
    "plan_turn",
    "scheduled_start",
    "scheduled_start_at",
    "start_at_ms",
]


@dataclass(frozen=True, slots=True)
class AppTurn:
    """A planned turn: the request for the app, and where it stands in the state
    (so that `apply_response` can check it still applies)."""

    request: pb.WorkflowRequest  # without pastEvents: they are `past`
    generation: int
    inbox_head: int
    delivered: int  # inbox events (from the head) in request.newEvents after the first
    past: tuple[pb.HistoryEvent, ...] = ()  # the committed history, shared, not copied

    def full_request(self) -> pb.WorkflowRequest:
        """The request with the history in `pastEvents` (a copy)."""
        request = pb.WorkflowRequest()
        request.CopyFrom(self.request)
        request.pastEvents.extend(self.past)
        return request


def _deliverable(state: WorkflowState) -> int:
    """How many inbox events, from the head, the app can act on now."""
    flips = sum(
        1 for e in state.inbox if event_kind(e) in ("executionSuspended", "executionResumed")
    )
    # add_events keeps suspend/resume strictly alternating, so the inbox's flips undo
    # back to the status at the end of the history.
    suspended = state.suspended != (flips % 2 == 1)
    useful, start_seen = 0, state.started
    for index, event in enumerate(state.inbox):
        kind = event_kind(event)
        if kind == "executionSuspended":
            suspended = True
        elif kind == "executionResumed":
            suspended, useful = False, index + 1
        elif not suspended:
            useful = index + 1
        if kind == "executionStarted" and index < useful:
            start_seen = True
    # Nothing runs before the start; events raised earlier wait with it.
    return useful if start_seen else 0


def scheduled_start_at(state: WorkflowState) -> Timestamp | None:
    """The scheduled start time of a start still waiting in the inbox, as the client gave
    it, or None: no start waits, or it carries no `scheduledStartTimestamp`."""
    if state.started or state.is_terminal:
        return None
    for event in state.inbox:
        if event_kind(event) == "executionStarted":
            started = event.executionStarted
            if not started.HasField("scheduledStartTimestamp"):
                return None
            return started.scheduledStartTimestamp
    return None


def start_at_ms(state: WorkflowState) -> int | None:
    """The millisecond from which a scheduled start may run (`scheduled_start_at`,
    rounded up), or None."""
    at = scheduled_start_at(state)
    return None if at is None else due_ms(at)


def scheduled_start(state: WorkflowState, now_ms: int) -> ScheduleStart | None:
    """The wake-up a start scheduled after `now_ms` needs (None for any other state)."""
    at = start_at_ms(state)
    if at is None or at <= now_ms:
        return None
    return ScheduleStart(state.instance_id, state.generation, at)


def plan_turn(state: WorkflowState, now_ms: int) -> AppTurn | None:
    """The request for the app, or None when there is nothing for it to do (which
    includes a start scheduled after `now_ms`: nothing runs before it)."""
    if state.is_terminal or not state.inbox:
        return None
    if any(event_kind(e) == "executionTerminated" for e in state.inbox):
        raise WorkflowError("a termination is pending: call settle() before plan_turn()")
    delivered = _deliverable(state)
    if delivered == 0:
        return None
    at = start_at_ms(state)
    if at is not None and at > now_ms:
        return None
    # Never before a timer it delivers was due: the workflow reads its clock from this
    # stamp, and the reminder that fired the timer may run on a clock a little ahead.
    fired = (e.timerFired.fireAt for e in state.inbox[:delivered] if e.HasField("timerFired"))
    stamp = max([now_ms, *(due_ms(at) for at in fired)])
    started = pb.HistoryEvent(eventId=-1, timestamp=to_timestamp(stamp))
    started.workflowStarted.SetInParent()
    request = pb.WorkflowRequest(instanceId=state.instance_id)
    request.executionId.value = state.metadata.execution_id
    request.newEvents.append(started)
    request.newEvents.extend(state.inbox[:delivered])
    return AppTurn(
        request=request,
        generation=state.generation,
        inbox_head=state.inbox_head,
        delivered=delivered,
        past=state.history,
    )


def _check_turn(state: WorkflowState, turn: AppTurn, response: pb.WorkflowResponse) -> None:
    if response.instanceId and response.instanceId != state.instance_id:
        raise InvalidResponseError(
            f"response for {response.instanceId!r} given to {state.instance_id!r}"
        )
    if (turn.generation, len(turn.past), turn.inbox_head) != (
        state.generation,
        len(state.history),
        state.inbox_head,
    ):
        raise StaleTurnError(f"stale turn for {state.instance_id!r}: state moved on")


def _turn_events(turn: AppTurn, response: pb.WorkflowResponse) -> list[pb.HistoryEvent]:
    """The turn's WorkflowStarted (stamped with the version the app ran) and the
    delivered inbox events, as they go into the history."""
    started = pb.HistoryEvent()
    started.CopyFrom(turn.request.newEvents[0])
    if response.HasField("version"):
        started.workflowStarted.version.CopyFrom(response.version)
    return [started, *turn.request.newEvents[1:]]


def _recorded(
    state: WorkflowState,
    turn_events: list[pb.HistoryEvent],
    action_events: list[pb.HistoryEvent],
    response: pb.WorkflowResponse,
    now_ms: int,
) -> WorkflowState:
    """`state` with the turn's events moved into its history and the actions' appended."""
    delivered = len(turn_events) - 1  # the first is the turn's WorkflowStarted
    events = (*turn_events, *action_events)
    started = state.started or any(event_kind(e) == "executionStarted" for e in turn_events)
    custom = response.customStatus.value if response.HasField("customStatus") else None
    return replace(
        state,
        history=state.history + events,
        inbox=state.inbox[delivered:],
        inbox_head=state.inbox_head + delivered,
        open=state.open.after(events),
        started=started,
        stalled=any(event_kind(e) == "executionStalled" for e in action_events),
        custom_status=custom,
        metadata=replace(state.metadata, updated_ms=now_ms),
    )


@dataclass(slots=True)
class _Actions:
    """The app's actions, read in order up to the first that ends the turn."""

    events: list[pb.HistoryEvent]
    scheduled: list[pb.HistoryEvent]  # the events that carry an effect
    effects: list[Effect]
    completion: pb.CompleteWorkflowAction | None = None


def _check_source(action: pb.WorkflowAction, own_app: str | None) -> None:
    """An action's `router.sourceAppID` is where its outcome goes back to (a child's
    parent, say): any app but the workflow's own would send it where no one waits."""
    source = action.router.sourceAppID
    if own_app is not None and source and source != own_app:
        raise InvalidResponseError(
            f"action {action.id}: router.sourceAppID {source[:80]!r} is not this "
            f"workflow's app {own_app!r}"
        )


def _read_actions(
    response: pb.WorkflowResponse, now_ms: int, own_app: str | None = None
) -> _Actions:
    read = _Actions(events=[], scheduled=[], effects=[])
    for action in response.actions:
        _check_source(action, own_app)
        kind = action.WhichOneof("workflowActionType")
        if is_recorded(kind):
            event = record_action(action, now_ms)
            read.events.append(event)
            read.scheduled.append(event)
        elif kind == "terminateWorkflow":
            read.effects.append(_terminate_other(action.terminateWorkflow, now_ms))
        elif kind == "completeWorkflow":
            # The SDK sends nothing after it; anything that followed would be moot.
            read.completion = action.completeWorkflow
            break
        elif kind == "workflowVersionNotAvailable":
            read.events.append(_stalled_event(now_ms))
            break
        else:
            raise InvalidResponseError(f"unsupported workflow action {kind!r}")
    return read


def apply_response(
    state: WorkflowState,
    turn: AppTurn,
    response: pb.WorkflowResponse,
    now_ms: int,
    *,
    own_app: str | None = None,
) -> TurnResult:
    """Apply the app's answer to `turn`. `state` may hold events added since the turn
    was planned (they stay in the inbox); if the instance was terminated meanwhile, the
    answer is moot and nothing changes. `own_app`, the app id of the sidecar that hosts
    the workflow, is the only source app an action may name (None: not checked)."""
    if state.is_terminal:
        return TurnResult(state)
    _check_turn(state, turn, response)
    read = _read_actions(response, now_ms, own_app)
    recorded = _recorded(state, _turn_events(turn, response), read.events, response, now_ms)
    effects: list[Effect] = []
    for event in read.scheduled:
        effect = effect_for(recorded, event, fresh=True)
        if effect is not None:
            effects.append(effect)
    effects.extend(read.effects)
    if read.completion is None:
        return TurnResult(recorded, tuple(effects))
    return _complete(recorded, read.completion, effects, now_ms)


def _complete(
    state: WorkflowState,
    completion: pb.CompleteWorkflowAction,
    effects: list[Effect],
    now_ms: int,
) -> TurnResult:
    status = completion.workflowStatus
    if status == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
        _check_carryover(completion)
        return TurnResult(continue_as_new(state, completion, now_ms), tuple(effects))
    if status not in (
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
    ):
        raise InvalidResponseError(f"completeWorkflow with non-terminal status {status}")
    output = completion.result.value if completion.HasField("result") else None
    failure = completion.failureDetails if completion.HasField("failureDetails") else None
    result = finish(state, status, output, failure, now_ms)
    return TurnResult(result.state, (*effects, *result.effects))


def _check_carryover(completion: pb.CompleteWorkflowAction) -> None:
    """The SDK carries over the raised events the workflow had not taken yet, and
    nothing else: any other event would enter the next generation's history unasked (a
    task or a timer it never scheduled, a second start)."""
    for event in completion.carryoverEvents:
        kind = event_kind(event)
        if kind != "eventRaised":
            raise InvalidResponseError(
                f"continue-as-new carries over a {kind or 'empty'} event: only raised "
                "events are carried over"
            )
        problem = timestamp_problem(event.timestamp)
        if problem is not None:
            raise InvalidResponseError(f"a carried-over event's timestamp has {problem}")


def _terminate_other(action: pb.TerminateWorkflowAction, now_ms: int) -> TerminateInstance:
    reason = action.reason.value if action.HasField("reason") else None
    return TerminateInstance(
        instance_id=action.instanceId,
        event=terminated_event(reason, now_ms, recurse=action.recurse),
    )


def _stalled_event(now_ms: int) -> pb.HistoryEvent:
    event = pb.HistoryEvent(eventId=-1, timestamp=to_timestamp(now_ms))
    event.executionStalled.reason = pb.VERSION_NOT_AVAILABLE
    event.executionStalled.description = "the app has no matching workflow version"
    return event


def pending_work(state: WorkflowState) -> list[Effect]:
    """Everything to (re)start after an activation, derived from the stored state only
    (DESIGN 5.2: no reminder per activity): open activities, unfired timers, unfinished
    children, a turn if the inbox is not empty, the wake-up of a scheduled start (armed
    again whether or not it is due: one already due fires at once); for a finished
    child, the notice to its parent (receivers drop duplicates, so re-sending is
    harmless)."""
    if state.is_terminal:
        notify = notify_parent(state, state.metadata.completed_ms)
        return [notify] if notify is not None else []
    effects: list[Effect] = []
    open_items = [
        *sorted(state.open.tasks.items()),
        *sorted(state.open.timers.items()),
        *sorted(state.open.children.items()),
    ]
    for _, event in open_items:
        effect = effect_for(state, event)
        if effect is not None:
            effects.append(effect)
    at = start_at_ms(state)
    if at is not None:
        effects.append(ScheduleStart(state.instance_id, state.generation, at))
    if state.inbox:
        effects.append(RunTurn(state.instance_id))
    return effects
