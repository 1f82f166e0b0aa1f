"""Store doubles for tests: a memory store whose transactions can be held, to test what
runs meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sidecar.store import NO_EXPECT
from sidecar.store.memory import MemoryStore

__all__ = ["GatedStore"]


class GatedStore(MemoryStore):
    """A memory store whose transactions wait while `gate` is clear."""

    def __init__(self) -> None:
        super().__init__()
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
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        return await super().transact(writes, expect=expect, background=background)
