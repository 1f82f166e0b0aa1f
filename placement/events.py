"""The events a placement node's control loop consumes (see placement/server.py).

Kept apart from the node so that the gRPC edge (placement/edge.py) can put stream
events on the queue without importing the node that owns it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from placement.api.v1 import placement_pb2 as pb
from placement.membership import Membership
from placement.streams import HostStream
from raftkit.node import RaftStatus


@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream: HostStream
    reply: asyncio.Future[tuple[grpc.StatusCode, str] | bytes | None]


@dataclass(frozen=True, slots=True)
class StreamClosed:
    stream: HostStream


@dataclass(frozen=True, slots=True)
class ReportIn:
    stream: HostStream
    report: pb.HostReport


@dataclass(frozen=True, slots=True)
class MembershipApplied:
    state: Membership


@dataclass(frozen=True, slots=True)
class RaftChanged:
    status: RaftStatus


@dataclass(frozen=True, slots=True)
class TickIn:
    pass


@dataclass(frozen=True, slots=True)
class ProposalDone:
    pass


Event = (
    StreamOpened | StreamClosed | ReportIn | MembershipApplied | RaftChanged | TickIn | ProposalDone
)
