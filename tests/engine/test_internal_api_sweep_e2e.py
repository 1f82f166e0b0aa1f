"""DESIGN.md 4.5 for the APIs between the nodes: seeded random requests (`actorflow.fuzzing`)
to every method of the placement, reminders and sidecar peer services of a live
cluster, unary ones and streams alike. Such calls come only from other nodes (over
mutual TLS where it is on), but a bug or a stray client must not take a node down, nor
put into a Raft log a command that no node can apply.

No answer is INTERNAL or UNKNOWN; afterwards every Raft node is still alive, the
reminders and placement nodes each restart from their logs (which hold whatever the
sweep got committed) and rejoin with a leader and a quorum, and a workflow with a
durable timer runs to its result."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import msgpack
import pytest
from dapr.ext.workflow import WorkflowStatus
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from actorflow import status
from actorflow.fuzzing import fill
from actorflow.testing import pid_alive
from placement.api.v1 import placement_pb2
from reminders.api.v1 import reminders_pb2
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.api.v1 import actors_pb2

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1}
PER_RPC = 40  # calls per unary method and node
STREAMS = 8  # streams per streaming method and node, of 1 to 3 messages each
STREAM_S = 3.0
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def _methods(module: Any) -> Iterator[tuple[str, MethodDescriptor]]:
    for service in module.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            yield f"/{service.full_name}/{method.name}", method


def _message(method: MethodDescriptor, kind: str) -> type[Message]:
    desc = method.input_type if kind == "in" else method.output_type
    return message_factory.GetMessageClass(desc)


def _stub(channel: grpc.Channel, path: str, method: MethodDescriptor) -> Callable[..., Any]:
    kinds = (method.client_streaming, method.server_streaming)
    factory: Callable[..., Any] = {
        (False, False): channel.unary_unary,
        (True, True): channel.stream_stream,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
    }[kinds]
    stub: Callable[..., Any] = factory(
        path,
        request_serializer=_message(method, "in").SerializeToString,
        response_deserializer=_message(method, "out").FromString,
    )
    return stub


# Field values a node takes, among others it must refuse: a request filled with edge
# values alone would be refused before reaching anything behind the API.
_TIMES = [
    "0s",
    "1s",
    "500ms",
    "1h30m",
    "PT10S",
    "P1000Y",
    "-1s",
    "99999999999h",
    "",
    "2026-11-29T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "R5/PT1S",
]
_PERIODS = ["", "1s", "1ms", "PT0S", "R0/PT1S", "R5/PT1S", "R1/PT0.001S", "R99999999999/PT1S"]
_TYPES = ["dapr.internal.default.app.workflow", "dapr.internal.default.app.activity", "t"]
_METHODS = [
    "start",
    "event",
    "reminder",
    "get",
    "wait",
    "history",
    "purge",
    "recover",
    "rerun",
    "dispatch",
    "x",
]
_PAYLOAD_KEYS = ["e", "child", "new", "durable", "gen", "exec", "data", "t", "g", "at", "start"]


def _payload(rnd: random.Random) -> bytes:
    """An actor call's payload: a msgpack map of the keys the engine's actors read, with
    values of every kind (a random history event among them), or bytes of no format."""
    if rnd.random() < 0.2:
        return rnd.choice([b"", b"\xc1", b"\x81\xa1e", b"x" * 100])
    event = fill(pb.HistoryEvent(), rnd).SerializeToString()
    values = [event, True, 0, -1, 2**63, "x", None, b"\xff", [1], {"a": 1}]
    keys = rnd.sample(_PAYLOAD_KEYS, rnd.randint(0, 4))
    return bytes(msgpack.packb({k: rnd.choice(values) for k in keys}))


def _mostly(rnd: random.Random, usual: Any, *others: Any) -> Any:
    return usual if rnd.random() < 0.8 else rnd.choice(others)


def _key(key: reminders_pb2.ReminderKey, rnd: random.Random) -> None:
    key.namespace, key.app_id = "default", "sweep"
    key.actor_type = _mostly(rnd, "t", "x" * 300, "é", "")
    key.actor_id = _mostly(rnd, str(rnd.randint(1, 5)), "a||b", "\x00")
    key.name = _mostly(rnd, "r", "", "x" * 5000)


def _plausible(msg: Message, rnd: random.Random) -> None:
    """Set the fields that gate a request to values its node takes, mostly."""
    if isinstance(msg, reminders_pb2.CreateReminderRequest):
        _key(msg.key, rnd)
        msg.due_time, msg.period = _mostly(rnd, "1s", *_TIMES), _mostly(rnd, "", *_PERIODS)
        msg.ttl = _mostly(rnd, "", "1h", "2000-01-01T00:00:00Z", "PT1S", "x")
        msg.data = _mostly(rnd, b"d", b"", b"d" * 100_000)
    elif isinstance(msg, reminders_pb2.GetReminderRequest | reminders_pb2.DeleteReminderRequest):
        _key(msg.key, rnd)
    elif isinstance(msg, reminders_pb2.ListRemindersRequest):
        msg.namespace, msg.app_id = "default", "sweep"
    elif isinstance(msg, reminders_pb2.CreateRemindersRequest):
        for _ in range(rnd.randint(1, 3)):
            _plausible(msg.reminders.add(), rnd)
    elif isinstance(msg, actors_pb2.ActorCall):
        msg.actor.actor_type = rnd.choice(_TYPES)
        msg.actor.actor_id = rnd.choice(["sweep-1", "a::1::1", "", "a||b"])
        msg.method, msg.payload = rnd.choice(_METHODS), _payload(rnd)
    elif isinstance(msg, actors_pb2.ActorCallBatch):
        for _ in range(rnd.randint(1, 3)):
            _plausible(msg.calls.add(), rnd)


def _request(make: type[Message], rnd: random.Random) -> Message:
    msg = fill(make(), rnd)
    if rnd.random() < 0.7:
        _plausible(msg, rnd)
    return msg


def _one_call(call: Callable[..., Any], method: MethodDescriptor, rnd: random.Random) -> str:
    """One call with random content; its status code's name (OK, or the error's)."""
    make = _message(method, "in")
    try:
        if method.client_streaming:
            requests = [_request(make, rnd) for _ in range(rnd.randint(1, 3))]
            replies = call(iter(requests), timeout=STREAM_S)
            if method.server_streaming:
                for _ in replies:
                    pass
        else:
            call(_request(make, rnd), timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        assert code not in BAD, (method.full_name, code, exc.details())
        return str(code.name)
    return "OK"


def _sweep(address: str, module: Any, rnd: random.Random, codes: Counter[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        for path, method in _methods(module):
            call = _stub(channel, path, method)
            streaming = method.client_streaming or method.server_streaming
            for _ in range(STREAMS if streaming else PER_RPC):
                codes[f"{method.name} {_one_call(call, method, rnd)}"] += 1


def _healthy(cluster: Any) -> bool:
    info = cluster.info
    report = asyncio.run(status.collect(info["placement"], info["reminders"], []))
    return all(
        sum(1 for n in report[kind] if n["ok"] and n["leader"] and n["quorum"]) == 1
        and all(n["ok"] for n in report[kind])
        for kind in ("placement", "reminders")
    )


def test_random_calls_between_nodes_take_no_node_down(cluster: Any) -> None:
    rnd = random.Random(20261129)
    codes: Counter[str] = Counter()
    info = cluster.info
    targets = [(a, reminders_pb2) for a in info["reminders"]]
    targets += [(a, placement_pb2) for a in info["placement"]]
    targets += [(info["sidecars"][0]["grpc"], actors_pb2)]
    for address, module in targets:
        _sweep(address, module, rnd, codes)
    for rpc in ("CreateReminder", "CreateReminders", "GetReminder", "DeleteReminder"):
        assert codes[f"{rpc} OK"] > 0 and codes[f"{rpc} INVALID_ARGUMENT"] > 0, codes
    assert codes["CallActor OK"] > 0, codes  # answered, with the actor's own refusal inside
    names = [n for n in info["pids"] if n.startswith(("placement-", "reminders-"))]
    assert all(pid_alive(info["pids"][n]) for n in names)
    for name in ("reminders-0", "placement-0"):  # each replays its log, sweep and all
        again = cluster.kill_process(name)
        again()
        cluster.eventually(f"{name} never rejoined", lambda: _healthy(cluster), timeout_s=60)
    c = cluster.client(0)
    iid = c.schedule_new_workflow("timed", input=1.0, instance_id=f"after-{time.time_ns()}")
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) >= 1.0
