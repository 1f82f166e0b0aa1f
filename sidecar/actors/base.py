"""What an actor is to the runtime, and the errors of actor calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NewType, Protocol

ActorType = NewType("ActorType", str)
ActorId = NewType("ActorId", str)
ActorKey = tuple[str, str]  # (actor type, actor id)

REMINDER_METHOD = "__reminder__"

# What a turn answers: the reply's bytes, or a future of them when the reply comes after
# the turn (a caller waiting for a later state): the turn ends at once, the mailbox moves
# on, and the caller gets the future's outcome. The actor settles the future itself, in
# a later turn or a task of its own; the runtime cancels it when the caller goes away.
Answer = bytes | asyncio.Future[bytes]


class Actor(Protocol):
    """One activation. The runtime calls these one at a time (turn-based). An actor may
    also have `busy() -> bool`: True while it has work of its own in progress between
    turns, which keeps the idle sweep from deactivating it (see `sidecar.actors.host`)."""

    async def on_activate(self) -> None: ...

    async def invoke(self, method: str, payload: bytes) -> Answer: ...

    async def on_deactivate(self) -> None: ...


def _stay() -> None:
    return None


@dataclass(frozen=True, slots=True)
class ActorContext:
    actor_type: str
    actor_id: str
    sidecar: str  # this sidecar's host name
    services: Any  # what the sidecar offers its actors (store, router, ...)
    # Ask the runtime to deactivate this activation once the messages already queued
    # for it are handled, instead of after its idle timeout (an actor whose work is
    # done). A call that arrives later activates it again.
    leave: Callable[[], None] = _stay


ActorFactory = Callable[[ActorContext], Actor]
Invoke = Callable[[str, str, str, bytes], Awaitable[bytes]]


class ActorRuntimeError(Exception):
    """Base of the actor runtime's errors."""


class NotOwnerError(ActorRuntimeError):
    """This sidecar does not own the actor under its current table."""

    def __init__(self, actor_type: str, actor_id: str, table_version: int) -> None:
        super().__init__(f"{actor_type}/{actor_id} is not hosted here at table v{table_version}")
        self.table_version = table_version


class UnknownActorTypeError(ActorRuntimeError):
    def __init__(self, actor_type: str) -> None:
        super().__init__(f"actor type {actor_type!r} is not hosted by this sidecar")


class ActorCallError(ActorRuntimeError):
    """The actor's own code raised; the message says what."""


class ActorUnavailableError(ActorRuntimeError):
    """The call could not reach an owner before its deadline."""
