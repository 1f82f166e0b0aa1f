"""What the firing loop is fed: the clock it reads, the trigger streams the gRPC edge opens
(`Subscriber`), and the small frozen events that the edge, the Raft tick thread and proposal
tasks put on its queue.

Kept apart from the loop (`firing`, `delivery`) because the edge builds these values too;
`firing` re-exports the names that code imports from it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from raftkit.errors import RaftError
from raftkit.node import RaftStatus
from reminders.machine import Change

__all__ = [
    "AckIn",
    "AppId",
    "ChangesIn",
    "Clock",
    "Event",
    "LeadCommitted",
    "ProgressDone",
    "RaftChanged",
    "Subscriber",
    "SubscriberClosed",
    "SubscriberOpened",
    "SystemClock",
]

AppId = tuple[str, str]  # (namespace, app id)


class Clock(Protocol):
    def wall_ms(self) -> int: ...
    def monotonic(self) -> float: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(eq=False, slots=True)
class Subscriber:
    """One WatchTriggers stream. The edge writes `outbox` to the wire."""

    host: str
    app: AppId
    actor_types: frozenset[str]
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    in_flight: int = 0
    handler: asyncio.Task[object] | None = None
    closing: tuple[grpc.StatusCode, str] | None = None

    def serves(self, actor_type: str) -> bool:
        return not self.actor_types or actor_type in self.actor_types

    def close(self, code: grpc.StatusCode, message: str) -> None:
        if self.closing is None:
            self.closing = (code, message)
            # The handler closing its own stream is not cancelled: it is on its way out.
            if self.handler is not None and self.handler is not asyncio.current_task():
                self.handler.cancel()


# ---- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangesIn:
    seq: int
    changes: list[Change] | None


@dataclass(frozen=True, slots=True)
class RaftChanged:
    status: RaftStatus


@dataclass(frozen=True, slots=True)
class LeadCommitted:
    term: int


@dataclass(frozen=True, slots=True)
class SubscriberOpened:
    subscriber: Subscriber
    reply: asyncio.Future[int | None]  # the term served, or None: not the leader


@dataclass(frozen=True, slots=True)
class SubscriberClosed:
    subscriber: Subscriber


@dataclass(frozen=True, slots=True)
class AckIn:
    subscriber: Subscriber
    term: int
    delivered: tuple[int, ...]
    failed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProgressDone:
    items: list[list[object]]
    error: RaftError | None


Event = (
    ChangesIn
    | RaftChanged
    | LeadCommitted
    | SubscriberOpened
    | SubscriberClosed
    | AckIn
    | ProgressDone
)
