"""Which actor errors are a state store outage: worth trying again, never an answer.

An actor whose store failed answers its caller with the error's type name (the actor
host's `Type: message`, behind one `ActorCallError: ` per sidecar it crossed), or, when
the store failed while the actor was being activated, `activation failed: Type(...)`.
A store out of reach or unable to write (etcd members down or out of space, a full
disk), or one that lost a transaction's answer, says nothing about the request: the
same call may succeed a moment later (the gRPC API answers UNAVAILABLE for it, which
the SDK's waits retry on their own; a workflow's messages are sent again). Every other
error is the actor's answer (a refusal such as NOT_FOUND or RESOURCE_EXHAUSTED, or its
own failure).
"""

from __future__ import annotations

from sidecar.actors.base import ActorCallError
from sidecar.store import StoreUnavailableError, TransactionOutcomeUnknownError

__all__ = ["STORE_OUTAGES", "store_outage", "unwrapped"]

STORE_OUTAGES = frozenset(
    e.__name__ for e in (StoreUnavailableError, TransactionOutcomeUnknownError)
)
_WRAPPED = f"{ActorCallError.__name__}: "
_ACTIVATION = "activation failed: "


def unwrapped(error: ActorCallError) -> str:
    """The error's text without the prefixes the sidecars it crossed added."""
    text = str(error)
    while text.startswith(_WRAPPED):
        text = text[len(_WRAPPED) :]
    return text


def store_outage(error: ActorCallError) -> bool:
    text = unwrapped(error)
    if text.startswith(_ACTIVATION):
        return text[len(_ACTIVATION) :].partition("(")[0] in STORE_OUTAGES
    return text.partition(": ")[0] in STORE_OUTAGES
