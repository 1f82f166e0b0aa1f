"""`StatusFeed`: who hears of a `RaftNode`'s status changes, and how.

Listeners are called on pysyncobj's tick thread; asyncio waiters (`wait_for`) are woken
on their own loop with `call_soon_threadsafe`. Kept apart from `raftkit.node` because
this bridge between the tick thread and asyncio needs none of the node's Raft state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from raftkit.errors import RaftTimeoutError
from raftkit.status import RaftStatus

__all__ = ["StatusFeed"]

# The name this has always logged under (it was part of `raftkit.node`): log filters
# and alerts on it keep working.
logger = logging.getLogger("raftkit.node")


class StatusFeed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[RaftStatus], None]] = []
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._last_status: RaftStatus | None = None

    def add_listener(self, callback: Callable[[RaftStatus], None]) -> Callable[[], None]:
        """See `RaftNode.add_listener`. Returns an unsubscribe function."""
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def wait_for(
        self,
        read: Callable[[], RaftStatus],
        predicate: Callable[[RaftStatus], bool],
        *,
        timeout: float,
    ) -> RaftStatus:
        """Wait until `predicate(read())` holds; re-checked on every `publish`."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    waiter[1].clear()
                    status = read()
                    if predicate(status):
                        return status
                    await waiter[1].wait()
        except TimeoutError:
            raise RaftTimeoutError(f"condition not reached within {timeout}s") from None
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def publish(self, status: RaftStatus) -> None:
        """Tell listeners and waiters, if `status` differs from the last one published.
        Called on the tick thread."""
        if status == self._last_status:
            return
        self._last_status = status
        with self._lock:
            listeners = list(self._listeners)
            waiters = list(self._waiters)
        for callback in listeners:
            try:
                callback(status)
            except Exception:
                logger.exception("raft status listener failed")
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
