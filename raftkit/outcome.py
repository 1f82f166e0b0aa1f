"""What becomes of a proposed command: the markers `RaftNode`'s apply step returns for a
command it refused, and how the proposer's future is settled from them and from
pysyncobj's failure reasons (a result, or one of the `RaftError` subclasses).

Kept apart from `raftkit.node` because this mapping is pure: it touches neither
pysyncobj nor any thread but the event loop's. The markers never leave the process
(pysyncobj hands an apply result only to the local callback), so nothing here is
pickled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from raftkit.errors import (
    CommandRejectedError,
    LeadershipLostError,
    NotLeaderError,
    QueueFullError,
    RaftError,
    UnknownOutcomeError,
)

__all__ = ["Fenced", "Rejected", "fail_threadsafe", "failure", "settle"]

# pysyncobj.FAIL_REASON values
_SUCCESS, _QUEUE_FULL, _MISSING_LEADER, _DISCARDED = 0, 1, 2, 3
_NOT_LEADER, _LEADER_CHANGED, _REQUEST_DENIED, _UNKNOWN_OUTCOME = 4, 5, 6, 7


@dataclass(frozen=True, slots=True)
class Rejected:
    """Every replica refused the command (undecodable, or the state machine raised)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fenced:
    """The command was fenced with a term other than the one its entry was appended in."""

    fence_term: int
    entry_term: int


def settle(
    fut: asyncio.Future[object],
    result: object,
    error: int | None,
    hint: Callable[[], str | None],
) -> None:
    """Settle a proposer's future (on its event loop) from pysyncobj's callback
    arguments. `hint` gives the leader's address, read only when an error needs it."""
    if fut.done():
        return
    if error == _SUCCESS:
        match result:
            case Rejected(reason):
                fut.set_exception(CommandRejectedError(reason))
            case Fenced(fence_term, entry_term):
                fut.set_exception(LeadershipLostError(fence_term, entry_term, hint()))
            case _:
                fut.set_result(result)
        return
    fut.set_exception(failure(error, hint()))


def failure(error: int | None, hint: str | None) -> RaftError:
    if error in (_MISSING_LEADER, _NOT_LEADER):
        return NotLeaderError(hint)
    if error == _DISCARDED:
        return NotLeaderError(hint, "a new leader discarded the command; not applied")
    if error in (_LEADER_CHANGED, _UNKNOWN_OUTCOME):
        return UnknownOutcomeError(f"leader changed with the command in flight ({error})")
    if error == _QUEUE_FULL:
        return QueueFullError("pysyncobj command queue full")
    return RaftError(f"pysyncobj refused the command (reason {error})")


def fail_threadsafe(fut: asyncio.Future[object], *, error: BaseException) -> None:
    """Fail `fut` from any thread, unless it is settled by then or its loop is closed."""

    def settle_now() -> None:
        if not fut.done():
            fut.set_exception(error)

    with contextlib.suppress(RuntimeError):
        fut.get_loop().call_soon_threadsafe(settle_now)
