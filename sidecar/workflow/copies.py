"""How a client's request sent again is told from another request.

A router tries a call once more when the owner died before answering, though the owner
may have saved it. The APIs stamp a raise, a suspend and a resume with the request's
arrival (`events.stamped`: unique, never a whole millisecond), so a copy is the event
with the same stamp, kind and body. It is looked for where the first one may be by
then: the inbox (not taken yet), the history (taken), or, once a continue-as-new has
emptied the history (or a finished instance's id was started again), the marks the
earlier generations left (`RequestMark`).

Marks are kept for the requests of the last `MARK_WINDOW_MS` (the copy comes within
one call's deadline of its first) and at most `MAX_MARKS` of them, the newest: an
instance that takes more client requests than that in the window, and continues as new
in between, may take a late copy of one of the oldest as a new request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from itertools import chain

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.events import event_kind, is_client_stamped
from sidecar.workflow.state import RequestMark, WorkflowState

__all__ = [
    "MARK_WINDOW_MS",
    "MAX_MARKS",
    "STAMPED_KINDS",
    "holds_client_request",
    "holds_copy",
    "marks_to_keep",
    "request_mark",
]

# Client requests the API stamps on arrival, so that a copy of one sent again is told
# from another request of the same kind.
STAMPED_KINDS = ("eventRaised", "executionSuspended", "executionResumed")

MARK_WINDOW_MS = 15 * 60 * 1000
MAX_MARKS = 64


def holds_client_request(state: WorkflowState, event: pb.HistoryEvent) -> bool:
    """Whether `event` is a client's stamped request (a raise, a suspend, a resume) that
    `state` already holds, in its inbox, its history or its earlier generations' marks:
    the same request sent again."""
    kind = event_kind(event)
    return kind in STAMPED_KINDS and is_client_stamped(event) and holds_copy(state, event, kind)


def holds_copy(
    state: WorkflowState,
    event: pb.HistoryEvent,
    kind: str,
    also: Iterable[pb.HistoryEvent] = (),
) -> bool:
    """Whether `also`, `state`'s inbox, history or marks hold an event of `kind` with
    `event`'s arrival stamp and body."""
    events = chain(also, reversed(state.inbox), reversed(state.history))
    if _same_in(events, event, kind):
        return True
    return bool(state.earlier_requests) and request_mark(event, kind) in state.earlier_requests


def _same_in(events: Iterable[pb.HistoryEvent], event: pb.HistoryEvent, kind: str) -> bool:
    seconds, nanos = event.timestamp.seconds, event.timestamp.nanos
    body = getattr(event, kind)
    for seen in events:
        stamp = seen.timestamp
        if (
            stamp.nanos == nanos
            and stamp.seconds == seconds
            and seen.HasField(kind)
            and getattr(seen, kind) == body
        ):
            return True
    return False


def request_mark(event: pb.HistoryEvent, kind: str) -> RequestMark:
    """What a generation keeps of a client's request once its history is gone: the
    stamp, the kind and a digest of the body (names and data may be large)."""
    body = getattr(event, kind).SerializeToString(deterministic=True)
    digest = hashlib.blake2b(body, digest_size=8).digest()
    return RequestMark(event.timestamp.seconds, event.timestamp.nanos, kind, digest)


def marks_to_keep(state: WorkflowState, now_ms: int) -> tuple[RequestMark, ...]:
    """The marks the next generation of `state` keeps (a continue-as-new, or a new start
    of a finished instance's id): those `state` kept and those of the client requests
    in its history, within the window, newest last. Requests still in the inbox are not
    marked: a continue-as-new carries them on as events."""
    taken = [
        request_mark(event, kind)
        for event in state.history
        if (kind := event_kind(event)) in STAMPED_KINDS and is_client_stamped(event)
    ]
    since_s, since_ns = divmod((now_ms - MARK_WINDOW_MS) * 1_000_000, 1_000_000_000)
    recent = [
        mark
        for mark in chain(state.earlier_requests, taken)
        if (mark.seconds, mark.nanos) >= (since_s, since_ns)
    ]
    recent.sort(key=lambda mark: (mark.seconds, mark.nanos))
    # A request the SDK carried over is in two generations' histories: one mark.
    return tuple(dict.fromkeys(recent))[-MAX_MARKS:]
