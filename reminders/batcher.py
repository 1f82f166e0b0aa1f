"""Group-committed registration: `CreateBatcher` folds concurrent creates into few Raft
commands.

Calls are validated and planned on arrival (the proposer stamps `now_ms`), then the creates
that arrive while a `create` command is in flight share the next one. raftkit's journal
syncs the entry to disk on a majority before `propose` returns, so an acknowledged
registration is durable. Kept apart from the node and the gRPC edge because it only needs
Raft and a clock, and is tested on its own with a fake Raft (tests/reminders/test_batching.py).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from raftkit.codec import Command
from raftkit.errors import RaftError
from raftkit.node import RaftNode
from reminders.errors import InvalidReminderError
from reminders.firing_events import Clock
from reminders.machine import CreateItem, Key, Row, StoredList
from reminders.sizing import MAX_COMMAND_BYTES, MAX_ITEM_BYTES, item_size

__all__ = ["CreateBatcher"]


@dataclass(eq=False, slots=True)
class _CreateCall:
    """One API call's creates; may be spread over several commands (size limit)."""

    items: list[CreateItem]
    sizes: list[int]
    fut: asyncio.Future[StoredList]
    results: list[tuple[Key, Row] | None] = field(default_factory=list)
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


class CreateBatcher:
    """Group commit: creates that arrive while a proposal is in flight share the next one.

    A command holds at most `max_items` creates and stays below `MAX_COMMAND_BYTES`
    (see `reminders.sizing`), so a large CreateReminders call may take several."""

    def __init__(self, raft: RaftNode, clock: Clock, max_items: int, timeout_s: float) -> None:
        self._raft = raft
        self._clock = clock
        self._max_items = max_items
        self._timeout_s = timeout_s
        # (call, index of the next item to propose)
        self._pending: collections.deque[tuple[_CreateCall, int]] = collections.deque()
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.commands = 0

    async def create(self, items: list[CreateItem]) -> StoredList:
        sizes = [item_size(item) for item in items]
        for i, size in enumerate(sizes):
            if size > MAX_ITEM_BYTES:
                raise InvalidReminderError(
                    "data", f"reminder {i} encodes to {size} bytes, over {MAX_ITEM_BYTES}"
                )
        loop = asyncio.get_running_loop()
        call = _CreateCall(items, sizes, loop.create_future())
        self._pending.append((call, 0))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return await call.fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._propose(self._take())
        finally:
            self._draining = False

    def _take(self) -> list[tuple[_CreateCall, int]]:
        taken: list[tuple[_CreateCall, int]] = []
        used = 0
        while self._pending and len(taken) < self._max_items:
            call, index = self._pending[0]
            size = call.sizes[index]
            if taken and used + size > MAX_COMMAND_BYTES:
                break
            taken.append((call, index))
            used += size
            if index + 1 < len(call.items):
                self._pending[0] = (call, index + 1)
            else:
                self._pending.popleft()
        return taken

    async def _propose(self, taken: list[tuple[_CreateCall, int]]) -> None:
        items = [call.items[index] for call, index in taken]
        body = {"now_ms": self._clock.wall_ms(), "items": items}
        self.commands += 1
        try:
            result = await self._raft.propose(Command("create", body), timeout=self._timeout_s)
        except RaftError as exc:
            failed = {id(call): call for call, _ in taken}
            self._pending = collections.deque(
                entry for entry in self._pending if id(entry[0]) not in failed
            )
            for call in failed.values():
                if not call.fut.done():
                    call.fut.set_exception(exc)
            return
        pairs = result.pairs() if isinstance(result, StoredList) else []
        for (call, index), value in zip(taken, pairs, strict=True):
            call.results[index] = value
            call.done += 1
            if call.done == len(call.items) and not call.fut.done():
                call.fut.set_result(StoredList([r for r in call.results if r is not None]))
