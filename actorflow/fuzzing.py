"""Seeded random protobuf messages with edge values, for the sweep and fuzz tests.

`fill(msg, rnd)` sets a random choice of a message's fields, nested messages too (two
levels deep), to values that break careless code: empty and very long strings, NUL,
non-ASCII, the extremes of every integer type, an enum number no enum names, and
Timestamps before year 1 and after year 9999. `workflow_response` is an app's answer to
a workflow turn: mostly the SDK's own actions, with such values in them.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.workflow.events import OPTIONAL_TIMER_SECONDS, client_raised_event, to_timestamp

__all__ = ["INTS", "STRINGS", "fill", "workflow_action", "workflow_response"]

STRINGS = ["", "a", "fan", "waits", "dapr", "a||b", "a::1", "x" * 300, "é", "\x00", " ", "{}",
           "null", "%", "sweep-1"]  # fmt: skip
INTS = [0, 1, -1, 2**31 - 1, -(2**31)]
WELL_KNOWN = "google.protobuf."
MAX_DEPTH = 2

_F = FieldDescriptor
_CHOICES: dict[int, list[Any]] = {
    _F.TYPE_STRING: STRINGS,
    _F.TYPE_BOOL: [True, False],
    _F.TYPE_BYTES: [b"", b"\xff", b"x" * 100],
    _F.TYPE_DOUBLE: [0.0, -1.0, 1e300],
    _F.TYPE_FLOAT: [0.0, -1.0, 1e30],
    _F.TYPE_UINT32: [0, 1, 2**32 - 1],
    _F.TYPE_FIXED32: [0, 1, 2**32 - 1],
    _F.TYPE_UINT64: [0, 1, 2**64 - 1],
    _F.TYPE_FIXED64: [0, 1, 2**64 - 1],
}


def _scalar(field: Any, rnd: random.Random) -> Any:
    if field.enum_type is not None:
        return rnd.choice([v.number for v in field.enum_type.values] + [99])
    return rnd.choice(_CHOICES.get(field.type, INTS))


def fill(msg: Message, rnd: random.Random, depth: int = 0, share: float = 0.4) -> Message:
    """Sets about `share` of `msg`'s fields to edge values, nested messages too; returns
    `msg`."""
    for field in msg.DESCRIPTOR.fields:
        if rnd.random() < share:
            _fill_field(msg, field, rnd, depth)
    return msg


def _fill_field(msg: Message, field: Any, rnd: random.Random, depth: int) -> None:
    value = getattr(msg, field.name)
    kind = field.message_type
    if kind is None:
        if field.is_repeated:
            value.extend(_scalar(field, rnd) for _ in range(rnd.randint(0, 2)))
        else:
            setattr(msg, field.name, _scalar(field, rnd))
    elif kind.GetOptions().map_entry:
        for _ in range(rnd.randint(0, 2)):
            value[rnd.choice(STRINGS)] = rnd.choice(STRINGS)
    elif field.is_repeated:
        for _ in range(rnd.randint(0, 2) if depth < MAX_DEPTH else 0):
            fill(value.add(), rnd, depth + 1)
    elif kind.full_name.startswith(WELL_KNOWN):
        _fill_well_known(value, kind.full_name, rnd)
    elif depth < MAX_DEPTH:
        fill(value, rnd, depth + 1)


def _fill_well_known(value: Any, name: str, rnd: random.Random) -> None:
    if name == WELL_KNOWN + "Timestamp":  # years past 9999 and before 1 among them
        value.seconds = rnd.choice([0, -1, 2**40, -(2**40), 1_700_000_000])
    elif name == WELL_KNOWN + "StringValue":
        value.value = rnd.choice(STRINGS)
    else:
        value.SetInParent()


_KINDS = ["scheduleTask"] * 6 + ["createTimer"] * 3 + ["createChildWorkflow"] * 2 + [
    "sendEvent", "terminateWorkflow", "completeWorkflow", "workflowVersionNotAvailable",
    "createDetachedWorkflow", "",
]  # fmt: skip
_STATUSES = [pb.ORCHESTRATION_STATUS_COMPLETED, pb.ORCHESTRATION_STATUS_FAILED,
             pb.ORCHESTRATION_STATUS_TERMINATED, pb.ORCHESTRATION_STATUS_RUNNING, 99,
             *[pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW] * 4]  # fmt: skip


def _fire_at(rnd: random.Random, now_ms: int) -> Timestamp:
    ts = Timestamp()
    choice = rnd.random()
    if choice < 0.6:
        ts.CopyFrom(to_timestamp(now_ms + rnd.randint(-1_000, 100_000)))
    elif choice < 0.8:
        ts.seconds = OPTIONAL_TIMER_SECONDS  # the SDK's "never" timer
        ts.nanos = 999_999_999
    else:
        ts.seconds = rnd.choice([-(2**40), -62135596801, 2**40, 0])
        ts.nanos = rnd.choice([0, -1, 10**9])
    return ts


def workflow_action(rnd: random.Random, next_id: int, now_ms: int) -> pb.WorkflowAction:
    """One action as the SDK sends them, with edge values: its id mostly `next_id`, its
    kind mostly one the SDK uses (a timer mostly near `now_ms`, a continue-as-new
    carrying events), sometimes any message the wire can hold."""
    action = pb.WorkflowAction(id=rnd.choice([next_id, next_id, next_id, 1, *INTS]))
    kind = rnd.choice(_KINDS)
    if not kind:  # anything the message can hold
        fill(action, rnd, share=0.3)
        return action
    body = getattr(action, kind)
    body.SetInParent()
    fill(body, rnd, share=0.5)
    if kind == "createTimer":
        body.fireAt.CopyFrom(_fire_at(rnd, now_ms))
    elif kind == "completeWorkflow":
        body.workflowStatus = rnd.choice(_STATUSES)
        for _ in range(rnd.randint(0, 2)):
            carried = body.carryoverEvents.add()
            if rnd.random() < 0.9:  # the SDK carries raised events only
                carried.CopyFrom(client_raised_event(rnd.choice(STRINGS), "1", now_ms * 10**6))
            else:
                fill(carried, rnd)
    if rnd.random() < 0.15:
        fill(action.router, rnd)
    return action


def workflow_response(
    rnd: random.Random, instance_id: str, next_id: int, now_ms: int
) -> pb.WorkflowResponse:
    """An app's answer to a turn of `instance_id`: 0 to 5 actions from `workflow_action`
    (ids from `next_id` on), sometimes a custom status or a version."""
    res = pb.WorkflowResponse(instanceId=instance_id)
    for i in range(rnd.choice([0, 1, 1, 2, 3, 5])):
        res.actions.append(workflow_action(rnd, next_id + i, now_ms))
    if rnd.random() < 0.3:
        res.customStatus.value = rnd.choice(STRINGS)
    if rnd.random() < 0.1:
        fill(res.version, rnd)
    return res
