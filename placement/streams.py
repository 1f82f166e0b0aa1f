"""Host streams on the placement leader: validation of reports and order encoding.

Every order is serialised once and the same bytes are queued to every host of a step
(`encode_order`; an UPDATE once per table version the hosts hold, `encode_update`); the
stream handler writes them unchanged (its response serializer is the identity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf import unknown_fields
from google.protobuf.message import Message

from placement.api.v1 import placement_pb2 as pb
from placement.dissemination import Operation, Send
from placement.errors import InvalidHostError
from placement.membership import HostRecord, Membership
from placement.names import is_valid_name


def _unknown_fields(message: Message) -> int:
    count = len(unknown_fields.UnknownFieldSet(message))
    for desc, value in message.ListFields():
        if desc.message_type is not None and not desc.is_repeated:
            count += _unknown_fields(value)
    return count


def _check_text(field: str, value: str, max_len: int) -> None:
    if not value:
        raise InvalidHostError(field, "must not be empty")
    if not is_valid_name(value, max_len):
        raise InvalidHostError(field, f"invalid value {value[:80]!r}")


def _check_actor_types(types: list[str], max_types: int, max_len: int) -> None:
    if not types:
        raise InvalidHostError("actor_types", "must list at least one actor type")
    if len(types) > max_types:
        raise InvalidHostError("actor_types", f"at most {max_types} actor types")
    if len(set(types)) != len(types):
        raise InvalidHostError("actor_types", "duplicate actor types")
    for t in types:
        if not t or len(t) > max_len:
            raise InvalidHostError("actor_types", f"invalid actor type {t[:80]!r}")


def validate_report(report: pb.HostReport, max_types: int, max_name: int) -> HostRecord:
    """The host a status report describes, or InvalidHostError naming the bad field."""
    if _unknown_fields(report):
        raise InvalidHostError("report", "unknown fields (client newer than this node?)")
    if not report.HasField("status"):
        raise InvalidHostError("report", "the first message of a stream must be a status")
    h = report.status
    for field_name, value in (("name", h.name), ("app_id", h.app_id), ("address", h.address)):
        _check_text(field_name, value, max_name)
    host, _, port = h.address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidHostError("address", f"must be host:port, got {h.address[:80]!r}")
    _check_actor_types(list(h.actor_types), max_types, max_name)
    if h.incarnation and not is_valid_name(h.incarnation, max_name):
        raise InvalidHostError("incarnation", f"invalid value {h.incarnation[:80]!r}")
    return HostRecord(
        name=h.name,
        address=h.address,
        app_id=h.app_id,
        namespace=h.namespace or "default",
        actor_types=tuple(sorted(h.actor_types)),
        api_level=h.api_level,
        incarnation=h.incarnation,
    )


def table_proto(state: Membership, term: int, virtual_nodes: int) -> pb.PlacementTable:
    hosts = state.sorted_hosts()
    return pb.PlacementTable(
        version=state.version,
        term=term,
        virtual_nodes=virtual_nodes,
        api_level=min((h.api_level for h in hosts), default=0),
        hosts=[_host_proto(h) for h in hosts],
    )


def _host_proto(h: HostRecord) -> pb.Host:
    return pb.Host(
        name=h.name,
        address=h.address,
        app_id=h.app_id,
        namespace=h.namespace,
        actor_types=list(h.actor_types),
        api_level=h.api_level,
        incarnation=h.incarnation,
    )


_WIRE_OPS = {
    Operation.LOCK: pb.OPERATION_LOCK,
    Operation.UPDATE: pb.OPERATION_UPDATE,
    Operation.UNLOCK: pb.OPERATION_UNLOCK,
}


def delta_proto(base: Membership, new: Membership, virtual_nodes: int) -> pb.TableDelta:
    upserts = [
        h
        for name, h in sorted(new.hosts.items())
        if name not in base.hosts or base.hosts[name] != h
    ]
    removed = sorted(base.hosts.keys() - new.hosts.keys())
    return pb.TableDelta(
        base_version=base.version,
        upserts=[_host_proto(h) for h in upserts],
        removed=removed,
        virtual_nodes=virtual_nodes,
        api_level=min((h.api_level for h in new.hosts.values()), default=0),
    )


def encode_order(
    operation: Operation,
    version: int,
    term: int,
    table: pb.PlacementTable | None = None,
    delta: pb.TableDelta | None = None,
) -> bytes:
    order = pb.PlacementOrder(operation=_WIRE_OPS[operation], version=version, term=term)
    if table is not None:
        order.table.CopyFrom(table)
    if delta is not None:
        order.delta.CopyFrom(delta)
    return order.SerializeToString()


def encode_update(
    send: Send,
    versions: Mapping[int, Membership],
    streams: Iterable[HostStream],
    virtual_nodes: int,
) -> list[tuple[list[HostStream], bytes]]:
    """The UPDATE order of `send` for `streams`, encoded once per table version they hold:
    a delta from it when `versions` still has it, else the full table."""
    state = versions.get(send.version)
    if state is None:
        raise AssertionError(f"no membership recorded for round version {send.version}")
    by_base: dict[int, list[HostStream]] = {}
    for stream in streams:
        by_base.setdefault(stream.held_version, []).append(stream)
    orders = []
    for base_version, group in by_base.items():
        base = versions.get(base_version)
        if base is not None and 0 < base_version < send.version:
            delta = delta_proto(base, state, virtual_nodes)
            data = encode_order(send.operation, send.version, send.term, delta=delta)
        else:
            table = table_proto(state, send.term, virtual_nodes)
            data = encode_order(send.operation, send.version, send.term, table=table)
        orders.append((group, data))
    return orders


def encode_not_leader(leader_api_address: str | None) -> bytes:
    order = pb.PlacementOrder(not_leader=pb.NotLeader(leader_address=leader_api_address or ""))
    return order.SerializeToString()


@dataclass(eq=False, slots=True)
class HostStream:
    """One connected sidecar. Owned by the control loop; the handler only reads it."""

    record: HostRecord
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    last_seen: float = 0.0
    closing: tuple[grpc.StatusCode, str] | None = None
    handler: asyncio.Task[object] | None = None
    left: bool = False
    # The table version this host acknowledged UPDATE for on this stream: it can take
    # the next table as a delta from it.
    held_version: int = 0

    @property
    def name(self) -> str:
        return self.record.name

    def close(self, code: grpc.StatusCode, message: str) -> None:
        """Ask the stream's handler to end the call with this status (the handler
        closing its own stream is not cancelled: it is on its way out)."""
        if self.closing is None:
            self.closing = (code, message)
            handler = self.handler
            if handler is not None and not handler.done() and handler is not asyncio.current_task():
                handler.cancel()
