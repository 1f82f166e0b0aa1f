"""Store doubles for tests: a memory store whose transactions can be held, to test what
runs meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sidecar.store import NO_EXPECT
from sidecar.store.memory import MemoryStore

__all__ = ["GatedStore"]


class GatedStore(MemoryStore):
    """A memory store whose transactions wait while `gate` is clear (with
    `background_only`, only background writes do: an activity's saved outcome)."""

    def __init__(self, *, background_only: bool = False) -> None:
        super().__init__()
        self.background_only = background_only
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()  # a transaction is held at the gate

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        if not self.gate.is_set() and (background or not self.background_only):
            self.waiting.set()
            await self.gate.wait()
        return await super().transact(writes, expect=expect, background=background)
