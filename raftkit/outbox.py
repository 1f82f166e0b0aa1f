"""Writing a server stream's queued messages without ever cutting a write short.

placement's host streams and reminders' trigger streams hand what they send to a queue
(the stream's outbox) that a task of its own writes to the call. When the stream ends,
that task has to stop. Cancelling it in the middle of `context.write` is not safe:
grpc.aio gives up waiting, but gRPC's core keeps the write's batch pending, and the
status that should end the call is then refused (`GRPC_CALL_ERROR_TOO_MANY_OPERATIONS`,
logged by grpc as an ExecuteBatchError). The client never gets a status and waits
forever. Seen once in CI: placement refused a stale acknowledgement while the host's
first order was being written, and the test's client waited out its 20 s.

`OutboxWriter.stop` therefore interrupts only the wait for the next message; a write
already handed to gRPC is left to finish (up to `grace_s`, then given up with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_STOP_GRACE_S", "TASK_NAME", "OutboxWriter"]

TASK_NAME = "outbox-writer"

# A write gRPC has not finished after this long is stuck behind a peer that stopped
# reading (flow control); the call is then beyond a clean end either way.
DEFAULT_STOP_GRACE_S = 5.0


class OutboxWriter:
    """Writes each message put in `outbox` to the call of `context`, in order."""

    def __init__(
        self, context: grpc.aio.ServicerContext[Any, Any], outbox: asyncio.Queue[bytes]
    ) -> None:
        self._context = context
        self._outbox = outbox
        # True exactly while a write is in gRPC's hands: set in the same step that
        # starts it, so a cancel delivered while it is False lands on the queue's wait.
        self._writing = False
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=TASK_NAME)

    async def _run(self) -> None:
        while not self._stopping:
            data = await self._outbox.get()
            self._writing = True
            try:
                await self._context.write(data)
            finally:
                self._writing = False

    async def stop(self, grace_s: float = DEFAULT_STOP_GRACE_S) -> None:
        """End the writer; returns once no write of it is pending in gRPC (or after
        `grace_s` with one still pending, which is logged). Messages still queued are
        dropped. A write that failed (the peer went away) is not raised here: the call's
        own end reports it."""
        self._stopping = True
        task = self._task
        if not self._writing:
            task.cancel()
        try:
            done, _ = await asyncio.wait([task], timeout=grace_s)
        except asyncio.CancelledError:  # the call is being torn down: do not linger
            task.cancel()
            raise
        if not done:
            log.warning("a stream write still pending after %gs; giving it up", grace_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
