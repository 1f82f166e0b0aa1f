"""Group commit of creates and progress, with a fake Raft: every command stays under
pysyncobj's 64 KiB chunking threshold (reminders.sizing) and results reach each caller."""

from __future__ import annotations

import asyncio
from typing import cast

from raftkit.codec import Command, encode_command
from raftkit.node import RaftNode
from reminders.machine import CreateItem, Key, ReminderTable, create_item
from reminders.schedule import plan
from reminders.server import CreateBatcher
from reminders.sizing import MAX_COMMAND_BYTES

NOW = 1_700_000_000_000


class FakeRaft:
    def __init__(self) -> None:
        self.table = ReminderTable()
        self.sizes: list[int] = []

    async def propose(self, command: Command, *, timeout: float) -> object:
        self.sizes.append(len(encode_command(command)))
        await asyncio.sleep(0)  # let other callers queue behind this proposal
        result, _ = self.table.apply(command.kind, command.body)
        return result


class FixedClock:
    def wall_ms(self) -> int:
        return NOW

    def monotonic(self) -> float:
        return 0.0


def _item(i: int, data: bytes) -> CreateItem:
    key: Key = ("ns", "app", "T", f"a{i}", "r")
    schedule = plan("1s", "", "", NOW)
    return create_item(key, due_time="1s", period="", ttl="", data=data, schedule=schedule)


async def test_batches_are_cut_by_size_and_results_routed() -> None:
    raft = FakeRaft()
    batcher = CreateBatcher(cast(RaftNode, raft), FixedClock(), max_items=5000, timeout_s=1.0)
    big = [_item(i, bytes(700)) for i in range(1000)]
    small = [[_item(10_000 + i, b"")] for i in range(300)]
    results = await asyncio.gather(batcher.create(big), *(batcher.create(s) for s in small))
    assert [r.key[3] for r in results[0]] == [f"a{i}" for i in range(1000)]
    assert [r[0].key[3] for r in results[1:]] == [f"a{10_000 + i}" for i in range(300)]
    assert len(raft.sizes) > 10  # 700 KB cannot go in one command
    assert max(raft.sizes) < MAX_COMMAND_BYTES + 1024
    assert len(raft.table) == 1300
