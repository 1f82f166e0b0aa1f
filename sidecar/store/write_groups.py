"""Unconditional writes that share transactions: `WriteGroups`.

A store whose every transaction is a round trip to a replicated log (etcd: a Raft
proposal and an fsync on a quorum) pays per transaction, not per row. Writes without
an expected version (an activity's saved outcome, a purge's deletes) need no
transaction of their own: the ones waiting when a transaction can leave go together,
as one. At most `in_flight` such transactions are out at a time; what arrives meanwhile
waits and leaves in the next, so the groups grow with the load instead of the number of
transactions. A 12,000-activity fan-out on etcd sent 12,000 transactions of one row
each; the cluster fell behind and thousands timed out.

Semantics are those of the writes sent one by one, concurrently: each caller gets the
revision of the transaction that carried its writes, or that transaction's error. Two
writes of one key in one group land as the later one (the dict merge); writes of a key
in two groups in flight at once may land in either order, as two concurrent
transactions could before.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sidecar.store.base import StoreLimits, write_bytes

__all__ = ["WriteGroups"]

Send = Callable[[dict[str, bytes | None]], Awaitable[int]]


@dataclass(eq=False, slots=True)
class _Waiting:
    writes: Mapping[str, bytes | None]
    size: int
    future: asyncio.Future[int]


class WriteGroups:
    """Carries unconditional writes in shared transactions through `send` (which writes
    one dict atomically and returns its revision). Each write must fit `limits` alone
    (the caller checked it); a group never exceeds them."""

    def __init__(self, send: Send, limits: StoreLimits, in_flight: int = 4) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self._send = send
        self._limits = limits
        self._in_flight = in_flight
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()
        self._armed = False

    @property
    def sending(self) -> int:
        """Transactions out now."""
        return len(self._running)

    async def write(self, writes: Mapping[str, bytes | None]) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        size = write_bytes(writes, self._limits.op_bytes)
        self._waiting.append(_Waiting(writes, size, future))
        self._arm()
        return await future

    def _arm(self) -> None:
        """Send in the next loop pass, so the writes of this one leave together."""
        if not self._armed and len(self._running) < self._in_flight:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._armed = False
        loop = asyncio.get_running_loop()
        while self._waiting and len(self._running) < self._in_flight:
            group = self._take()
            if not group:
                continue  # every caller of the oldest writes gave up
            task = loop.create_task(self._carry(group))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _take(self) -> list[_Waiting]:
        """The oldest waiting writes that fit one transaction (at least one)."""
        group: list[_Waiting] = []
        keys: set[str] = set()
        size = 0
        while self._waiting:
            head = self._waiting[0]
            if head.future.done():  # its caller was cancelled: nothing to write
                self._waiting.popleft()
                continue
            new_keys = head.writes.keys() - keys
            too_big = (
                len(keys) + len(new_keys) > self._limits.max_ops
                or size + head.size > self._limits.max_bytes
            )
            if group and too_big:
                break
            group.append(self._waiting.popleft())
            keys.update(new_keys)
            size += head.size
        return group

    async def _carry(self, group: list[_Waiting]) -> None:
        merged: dict[str, bytes | None] = {}
        for waiting in group:
            merged.update(waiting.writes)
        try:
            revision = await self._send(merged)
        except Exception as exc:
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for waiting in group:
                waiting.future.cancel()
            raise
        for waiting in group:
            if not waiting.future.done():
                waiting.future.set_result(revision)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._waiting:
            self._arm()

    async def drain(self) -> None:
        """Send everything waiting and wait for every transaction out (before closing)."""
        while self._waiting or self._running:
            self._flush()
            if self._running:
                await asyncio.wait(set(self._running))
