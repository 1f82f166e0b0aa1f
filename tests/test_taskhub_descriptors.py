"""Our Durable Task proto against the one the installed Dapr SDK carries.

The SDK's `.proto` files have no package; ours live in `actorflow.taskhub.v1`. Names are
compared with the package stripped; everything that reaches the wire (field numbers,
types, labels, oneof membership, enum values, service methods and streaming) must match.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator

import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as sdk_service
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from sidecar.api.taskhub.v1 import taskhub_pb2

OUR_PACKAGE = "actorflow.taskhub.v1"
Msg = descriptor_pb2.DescriptorProto
Enum = descriptor_pb2.EnumDescriptorProto


def _file_protos(root: FileDescriptor) -> list[descriptor_pb2.FileDescriptorProto]:
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def walk(fd: FileDescriptor) -> None:
        if fd.name in seen or fd.name.startswith("google/protobuf/"):
            return
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        seen[fd.name] = proto
        for dep in fd.dependencies:
            walk(dep)

    walk(root)
    return list(seen.values())


def _short(type_name: str) -> str:
    name = type_name.lstrip(".")
    prefix = OUR_PACKAGE + "."
    return name[len(prefix) :] if name.startswith(prefix) else name


def _messages(prefix: str, msgs: Iterable[Msg]) -> Iterator[tuple[str, Msg]]:
    for m in msgs:
        name = f"{prefix}{m.name}"
        yield name, m
        yield from _messages(name + ".", m.nested_type)


def _enums(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, Enum]:
    out: dict[str, Enum] = {}
    for f in files:
        out.update({e.name: e for e in f.enum_type})
        for name, m in _messages("", f.message_type):
            out.update({f"{name}.{e.name}": e for e in m.enum_type})
    return out


def _field_shape(m: Msg, f: descriptor_pb2.FieldDescriptorProto) -> tuple[object, ...]:
    oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
    return (f.name, f.type, f.label, _short(f.type_name), oneof, f.proto3_optional)


def compare(
    ours: list[descriptor_pb2.FileDescriptorProto],
    sdk: list[descriptor_pb2.FileDescriptorProto],
) -> list[str]:
    """Every wire-visible difference, one line each (empty when compatible)."""
    problems: list[str] = []
    our_msgs = {n: m for f in ours for n, m in _messages("", f.message_type)}
    sdk_msgs = {n: m for f in sdk for n, m in _messages("", f.message_type)}
    for name, m in sorted(our_msgs.items()):
        other = sdk_msgs.get(name)
        if other is None:
            problems.append(f"message {name}: not in the SDK")
            continue
        mine = {f.number: _field_shape(m, f) for f in m.field}
        theirs = {f.number: _field_shape(other, f) for f in other.field}
        for num in sorted(mine.keys() | theirs.keys()):
            if mine.get(num) != theirs.get(num):
                problems.append(f"{name} field {num}: ours {mine.get(num)} sdk {theirs.get(num)}")
    problems += [
        f"message {n}: missing from ours" for n in sorted(sdk_msgs.keys() - our_msgs.keys())
    ]
    our_enums, sdk_enums = _enums(ours), _enums(sdk)
    for name in sorted(our_enums.keys() | sdk_enums.keys()):
        a, b = our_enums.get(name), sdk_enums.get(name)
        va = sorted((v.number, v.name) for v in a.value) if a else None
        vb = sorted((v.number, v.name) for v in b.value) if b else None
        if va != vb:
            problems.append(f"enum {name}: ours {va} sdk {vb}")
    problems += _compare_services(ours, sdk)
    return problems


def _methods(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, tuple[object, ...]]:
    return {
        f"{s.name}.{m.name}": (
            _short(m.input_type),
            _short(m.output_type),
            m.client_streaming,
            m.server_streaming,
        )
        for f in files
        for s in f.service
        for m in s.method
    }


def _compare_services(
    ours: list[descriptor_pb2.FileDescriptorProto],
    sdk: list[descriptor_pb2.FileDescriptorProto],
) -> list[str]:
    mine, theirs = _methods(ours), _methods(sdk)
    return [
        f"rpc {name}: ours {mine.get(name)} sdk {theirs.get(name)}"
        for name in sorted(mine.keys() | theirs.keys())
        if mine.get(name) != theirs.get(name)
    ]


@pytest.fixture(scope="module")
def ours() -> list[descriptor_pb2.FileDescriptorProto]:
    return _file_protos(taskhub_pb2.DESCRIPTOR)


@pytest.fixture(scope="module")
def sdk() -> list[descriptor_pb2.FileDescriptorProto]:
    return _file_protos(sdk_service.DESCRIPTOR)


def test_our_package_is_not_the_sdks(ours: list[descriptor_pb2.FileDescriptorProto]) -> None:
    assert [f.package for f in ours] == [OUR_PACKAGE]


def test_wire_compatible_with_installed_sdk(
    ours: list[descriptor_pb2.FileDescriptorProto], sdk: list[descriptor_pb2.FileDescriptorProto]
) -> None:
    assert compare(ours, sdk) == []


def test_checker_covers_a_meaningful_surface(
    ours: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    names = {n for f in ours for n, _ in _messages("", f.message_type)}
    assert {"HistoryEvent", "WorkItem", "WorkflowAction", "CreateInstanceRequest"} <= names
    assert len(_methods(ours)) >= 17


@pytest.mark.parametrize(
    ("message", "field", "attr", "value"),
    [
        ("HistoryEvent", "eventId", "number", 99),
        (
            "CreateInstanceRequest",
            "instanceId",
            "type",
            descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        ),
        (
            "WorkflowResponse",
            "actions",
            "label",
            descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        ),
    ],
)
def test_checker_catches_a_changed_field(
    ours: list[descriptor_pb2.FileDescriptorProto],
    sdk: list[descriptor_pb2.FileDescriptorProto],
    message: str,
    field: str,
    attr: str,
    value: int,
) -> None:
    tampered = [descriptor_pb2.FileDescriptorProto.FromString(f.SerializeToString()) for f in ours]
    msg = next(m for f in tampered for n, m in _messages("", f.message_type) if n == message)
    target = next(f for f in msg.field if f.name == field)
    setattr(target, attr, value)
    problems = compare(tampered, sdk)
    assert problems and all(p.startswith(f"{message} field") for p in problems), problems


def test_checker_catches_a_renamed_rpc(
    ours: list[descriptor_pb2.FileDescriptorProto], sdk: list[descriptor_pb2.FileDescriptorProto]
) -> None:
    tampered = [descriptor_pb2.FileDescriptorProto.FromString(f.SerializeToString()) for f in ours]
    tampered[0].service[0].method[0].name = "Hi"
    problems = compare(tampered, sdk)
    assert any("rpc TaskHubSidecarService.Hi" in p for p in problems), problems


@pytest.mark.parametrize(
    "order",
    [
        ["sidecar.api.taskhub.v1.taskhub_pb2", "dapr.ext.workflow"],
        ["dapr.ext.workflow", "sidecar.api.taskhub.v1.taskhub_pb2"],
    ],
)
def test_sdk_and_ours_share_one_process(order: list[str]) -> None:
    code = (
        "import importlib\n"
        f"for name in {order!r}:\n"
        "    importlib.import_module(name)\n"
        "from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as s\n"
        "from sidecar.api.taskhub.v1 import taskhub_pb2 as o\n"
        "import placement.api.v1.placement_pb2, reminders.api.v1.reminders_pb2\n"
        "import sidecar.api.v1.actors_pb2\n"
        "assert s.WorkItem.DESCRIPTOR.full_name == 'WorkItem'\n"
        "assert o.WorkItem.DESCRIPTOR.full_name == 'actorflow.taskhub.v1.WorkItem'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_bytes_cross_between_the_two_definitions() -> None:
    """A message serialised by the SDK's classes parses with ours, and back."""
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as spb

    theirs = spb.WorkItem(completionToken="t1")
    theirs.workflowRequest.instanceId = "wf-1"
    event = theirs.workflowRequest.newEvents.add(eventId=-1)
    event.executionStarted.name = "order"
    event.executionStarted.input.value = '{"x": 1}'
    mine = taskhub_pb2.WorkItem.FromString(theirs.SerializeToString())
    assert mine.workflowRequest.newEvents[0].executionStarted.input.value == '{"x": 1}'
    assert mine.WhichOneof("request") == "workflowRequest"
    back = spb.WorkItem.FromString(mine.SerializeToString())
    assert back == theirs
