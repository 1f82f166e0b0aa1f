"""The virtual actor runtime of the sidecar.

- `base`: the `Actor` protocol, `ActorContext` and the runtime's errors.
- `host`: `ActorHost`, local turn-based activations with idle and moved-away deactivation.
- `router`: `ActorRouter`, routes calls to the owning sidecar by the placement table and
  retries across table changes.
- `peer`: the sidecar-to-sidecar gRPC service and its pipelined client pool.
"""

from __future__ import annotations

from sidecar.actors.base import (
    REMINDER_METHOD,
    Actor,
    ActorCallError,
    ActorContext,
    ActorFactory,
    ActorRuntimeError,
    ActorUnavailableError,
    NotOwnerError,
    UnknownActorTypeError,
)
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool, PeerService
from sidecar.actors.router import ActorRouter

__all__ = [
    "REMINDER_METHOD",
    "Actor",
    "ActorCallError",
    "ActorContext",
    "ActorFactory",
    "ActorHost",
    "ActorRouter",
    "ActorRuntimeError",
    "ActorUnavailableError",
    "NotOwnerError",
    "PeerPool",
    "PeerService",
    "UnknownActorTypeError",
]
