"""Work items for connected apps: the GetWorkItems streams and their completions.

Apps pull work: each `GetWorkItems` stream is a connection that takes work items from
one shared queue, so several replicas of an app share the load and each SDK's own
thread pools bound how much it runs at once. A work item carries a completion token;
the app's CompleteOrchestratorTask / CompleteActivityTask answers resolve the waiting
caller by that token. When a stream ends, the items it had taken and not answered go
back to the front of the queue for the next connection (the same app reconnecting, or
another replica). Answers for unknown tokens (duplicates, or items re-dispatched and
answered twice) are acknowledged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Pending:
    item: pb.WorkItem
    reply: asyncio.Future[Any]
    taken_by: int | None = None


def _forget(taken: set[_Pending], pending: _Pending, _done: object) -> None:
    taken.discard(pending)


@dataclass(slots=True)
class AppConnections:
    """Owned by the sidecar's event loop; shared by the TaskHub servicer and the actors."""

    _queue: deque[_Pending] = field(default_factory=deque)
    _ready: asyncio.Condition = field(default_factory=asyncio.Condition)
    _by_token: dict[str, _Pending] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    connections: int = 0
    dispatched: int = 0

    async def run_workflow(self, request: pb.WorkflowRequest) -> pb.WorkflowResponse:
        item = pb.WorkItem(workflowRequest=request)
        result: pb.WorkflowResponse = await self._submit(item)
        return result

    async def run_activity(self, request: pb.ActivityRequest) -> pb.ActivityResponse:
        item = pb.WorkItem(activityRequest=request)
        result: pb.ActivityResponse = await self._submit(item)
        return result

    async def _submit(self, item: pb.WorkItem) -> Any:
        token = f"t{next(self._ids)}"
        item.completionToken = token
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        self._by_token[token] = pending
        async with self._ready:
            self._queue.append(pending)
            self._ready.notify()
        try:
            return await pending.reply
        finally:
            self._by_token.pop(token, None)
            if pending in self._queue:
                self._queue.remove(pending)

    def complete(self, token: str, response: Any) -> bool:
        """Resolve the caller waiting on `token`; False when nobody is (a duplicate)."""
        pending = self._by_token.get(token)
        if pending is None or pending.reply.done():
            return False
        pending.reply.set_result(response)
        return True

    async def stream(self) -> AsyncIterator[pb.WorkItem]:
        """One app connection: yields work items until the app goes away."""
        conn = next(self._ids)
        self.connections += 1
        taken: set[_Pending] = set()  # answered ones leave it through the done callback
        try:
            while True:
                async with self._ready:
                    await self._ready.wait_for(lambda: bool(self._queue))
                    pending = self._queue.popleft()
                if pending.reply.done():
                    continue
                pending.taken_by = conn
                taken.add(pending)
                pending.reply.add_done_callback(partial(_forget, taken, pending))
                self.dispatched += 1
                yield pending.item
        finally:
            self.connections -= 1
            requeue = [p for p in taken if not p.reply.done()]
            if requeue:
                log.info("app connection closed: %d work items go back to the queue", len(requeue))
                self._queue.extendleft(reversed(requeue))
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._ready:
            self._ready.notify_all()
