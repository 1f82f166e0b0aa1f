"""`WriteGroups`: unconditional writes waiting together share one transaction, at most
`in_flight` transactions are out at a time, each caller gets its transaction's
revision or error."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from sidecar.store.base import StoreLimits
from sidecar.store.write_groups import WriteGroups

BIG = StoreLimits(max_ops=1000, max_bytes=1 << 20)


@dataclass
class Log:
    """A fake transaction log: records each transaction; holds them while `gate` is
    clear; fails a transaction holding a key in `failing`."""

    sent: list[dict[str, bytes | None]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    failing: set[str] = field(default_factory=set)
    out: int = 0
    most_out: int = 0

    async def send(self, writes: dict[str, bytes | None]) -> int:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await self.gate.wait()
        finally:
            self.out -= 1
        if self.failing & writes.keys():
            raise ConnectionError("lost")
        self.sent.append(writes)
        return len(self.sent)


async def test_the_writes_of_one_pass_share_one_transaction() -> None:
    log = Log()
    log.gate.set()
    groups = WriteGroups(log.send, BIG)
    revisions = await asyncio.gather(*(groups.write({f"k{i}": b"v"}) for i in range(100)))
    assert len(log.sent) == 1 and len(log.sent[0]) == 100
    assert set(revisions) == {1}


async def test_writes_arriving_while_transactions_are_out_leave_together() -> None:
    log = Log()
    groups = WriteGroups(log.send, BIG, in_flight=2)
    first = [asyncio.ensure_future(groups.write({f"a{i}": b"1"})) for i in range(3)]
    await asyncio.sleep(0)  # one loop pass: the first group leaves
    later = []
    for i in range(20):  # one write per loop pass, while transactions are out
        later.append(asyncio.ensure_future(groups.write({f"b{i}": b"2"})))
        await asyncio.sleep(0)
    assert log.out == 2  # the bound holds: the rest wait
    log.gate.set()
    await asyncio.gather(*first, *later)
    assert log.most_out == 2
    assert sum(len(t) for t in log.sent) == 23
    assert len(log.sent) <= 4  # not one transaction per write


async def test_a_group_stays_within_the_limits() -> None:
    log = Log()
    log.gate.set()
    groups = WriteGroups(log.send, StoreLimits(max_ops=3, max_bytes=1 << 20))
    await asyncio.gather(*(groups.write({f"k{i}": b"v"}) for i in range(7)))
    assert [len(t) for t in log.sent] == [3, 3, 1]
    log.sent.clear()
    by_size = WriteGroups(log.send, StoreLimits(max_ops=100, max_bytes=250, op_bytes=20))
    await asyncio.gather(*(by_size.write({f"k{i}": b"x" * 98}) for i in range(5)))
    assert [len(t) for t in log.sent] == [2, 2, 1]  # 2 + 98 + 20 bytes each


async def test_an_error_reaches_every_caller_of_its_transaction_only() -> None:
    log = Log(failing={"bad"})
    log.gate.set()
    groups = WriteGroups(log.send, StoreLimits(max_ops=2, max_bytes=1 << 20))
    results = await asyncio.gather(
        groups.write({"bad": b"1"}), groups.write({"k1": b"1"}), groups.write({"k2": b"1"}),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[0], ConnectionError) and isinstance(results[1], ConnectionError)
    assert results[2] == 1
    assert log.sent == [{"k2": b"1"}]


async def test_a_cancelled_callers_writes_are_not_sent_and_one_key_twice_is_the_later() -> None:
    log = Log()
    groups = WriteGroups(log.send, BIG, in_flight=1)
    held = asyncio.ensure_future(groups.write({"first": b"1"}))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(groups.write({"gone": b"1"}))
    one = asyncio.ensure_future(groups.write({"k": b"old"}))
    two = asyncio.ensure_future(groups.write({"k": b"new"}))
    await asyncio.sleep(0)
    gone.cancel()
    log.gate.set()
    await asyncio.gather(held, one, two)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert log.sent == [{"first": b"1"}, {"k": b"new"}]
    assert one.result() == two.result() == 2


async def test_drain_sends_what_waits() -> None:
    log = Log()
    log.gate.set()
    groups = WriteGroups(log.send, BIG, in_flight=1)
    pending = [asyncio.ensure_future(groups.write({f"k{i}": b"v"})) for i in range(5)]
    await asyncio.sleep(0)  # the callers wait in `write`, nothing sent yet
    assert not log.sent
    await groups.drain()
    assert groups.sending == 0
    assert sum(len(t) for t in log.sent) == 5
    await asyncio.gather(*pending)
