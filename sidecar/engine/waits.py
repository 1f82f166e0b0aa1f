"""Callers waiting for a workflow instance's state to pass a test (WaitForInstanceStart,
WaitForInstanceCompletion): futures kept by the instance's own actor, settled when a
change it makes passes the test, or when their time bound runs out.

The actor holds them, not the sidecar the client called: a client may wait through any
sidecar, and the instance's owner is the only one that sees its changes as they happen.
A wait answered `False` (bound reached, or the actor leaving) is asked again by its
caller, through the router, wherever the instance lives by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")
Test = Callable[[S], bool]


@dataclass(slots=True)
class Waiting:
    """The callers that a sidecar's actors hold now (a `/metrics` gauge)."""

    callers: int = 0


def _settle(future: asyncio.Future[bool], passed: bool) -> None:
    if not future.done():
        future.set_result(passed)


class StateWaits(Generic[S]):
    """The waits on one actor's state `S`; the actor calls `changed` after each change."""

    def __init__(self, tally: Waiting | None = None) -> None:
        self._waits: dict[asyncio.Future[bool], Test[S]] = {}
        self._tally = tally if tally is not None else Waiting()

    def __len__(self) -> int:
        return len(self._waits)

    def until(self, test: Test[S], state: S, timeout_s: float) -> asyncio.Future[bool]:
        """A future that becomes True once a state given to `changed` passes `test` (at
        once if `state` does), or False after `timeout_s` or at `release`. Cancelling it
        withdraws the wait."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if test(state):
            future.set_result(True)
            return future
        self._waits[future] = test
        self._tally.callers += 1
        bound = loop.call_later(timeout_s, _settle, future, False)

        def forget(done: asyncio.Future[bool]) -> None:
            bound.cancel()
            del self._waits[done]
            self._tally.callers -= 1

        future.add_done_callback(forget)
        return future

    def changed(self, state: S) -> None:
        for future, test in list(self._waits.items()):
            if test(state):
                _settle(future, True)

    def release(self) -> None:
        """Answer every wait False (the actor is going away; its callers ask again)."""
        for future in list(self._waits):
            _settle(future, False)
