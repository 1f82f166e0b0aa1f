"""The firing loop through a gap in its quorum, on a fake clock and a fake Raft: while the
leader still leads its term but has not heard from a majority lately, it fires nothing
and keeps its firings in flight and its trigger streams; when the quorum is back it goes
on without re-sending what was in flight. Another role or term ends the firing as
before (streams closed, so that sidecars find the next leader).

Before, every such gap dropped the firing state and closed the streams: under a burst on
a loaded machine the followers answered late, and 100,000 due reminders were delivered at
12,000-23,000/s with tens of thousands of them fired twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from raftkit.node import RaftStatus, Role
from reminders.api.v1 import reminders_pb2 as pb
from reminders.config import RemindersConfig
from reminders.firing import AckIn, ChangesIn, Dispatcher, RaftChanged, Subscriber, SubscriberOpened
from reminders.machine import Key
from reminders.replica import Replica
from reminders.testing import FakeClock, LeadingRaft, replica_due

NOW = 1_700_000_000_000
TERM = 3
APP = ("ns", "app")
ADDRESS = "127.0.0.1:7201"


def _key(name: str) -> Key:
    return (*APP, "T", "a1", name)


def _replica(due_in_ms: dict[str, int]) -> Replica:
    return replica_due({_key(name): ms for name, ms in due_in_ms.items()}, NOW, TERM)


def _status(role: Role, quorum: bool, term: int = TERM) -> RaftStatus:
    return RaftStatus(ADDRESS, role, term, ADDRESS, quorum, 1, 1, True)


class Loop:
    def __init__(self, dispatcher: Dispatcher, clock: FakeClock, raft: LeadingRaft) -> None:
        self.dispatcher, self.clock, self.raft = dispatcher, clock, raft
        self.sub = Subscriber(host="s0", app=APP, actor_types=frozenset())

    async def settle(self) -> None:
        for _ in range(50):  # the loop handles one wake-up in a few passes
            await asyncio.sleep(0)

    async def at(self, ms: int) -> list[str]:
        """Move the clock to NOW + ms, let the loop act, and take what it sent."""
        self.clock.ms = NOW + ms
        self.dispatcher.post(ChangesIn(0, []))  # wakes the loop; an old seq changes nothing
        await self.settle()
        sent: list[pb.Trigger] = []
        while not self.sub.outbox.empty():
            sent.extend(pb.TriggerBatch.FromString(self.sub.outbox.get_nowait()).triggers)
        return [t.key.name for t in sent]

    async def raft_says(self, role: Role, quorum: bool, term: int = TERM) -> None:
        self.raft.quorum, self.raft.is_leader, self.raft.term = quorum, role is Role.LEADER, term
        self.dispatcher.post(RaftChanged(_status(role, quorum, term)))
        await self.settle()


@pytest.fixture
async def loop(tmp_path: Path) -> AsyncIterator[Loop]:
    config = RemindersConfig(
        node_id="r0", api_address="127.0.0.1:7101", raft_address=ADDRESS,
        peers={}, data_dir=tmp_path, allow_insecure_raft=True, fire_linger_ms=0,
    )  # fmt: skip
    clock, raft = FakeClock(NOW), LeadingRaft(TERM, ADDRESS)
    dispatcher = Dispatcher(config, _replica({"a": 1000, "b": 1005, "c": 1030}), raft, clock)  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    loop = Loop(dispatcher, clock, raft)
    await loop.raft_says(Role.LEADER, True)  # the `lead` command is proposed and applied
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    dispatcher.post(SubscriberOpened(loop.sub, reply))
    assert await asyncio.wait_for(reply, 5) == TERM
    yield loop
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_gap_in_the_quorum_pauses_the_firing_and_keeps_what_is_in_flight(
    loop: Loop,
) -> None:
    assert await loop.at(1000) == ["a"]
    await loop.raft_says(Role.LEADER, quorum=False)
    assert await loop.at(1030) == []  # "b" and "c" are due: nothing goes without a quorum
    assert loop.sub.closing is None  # the stream stays: the sidecar need not look elsewhere
    assert loop.dispatcher.term == TERM
    await loop.raft_says(Role.LEADER, quorum=True)
    assert sorted(await loop.at(1031)) == ["b", "c"]  # and "a", still in flight, not again
    fids = tuple(range(1, 4))
    loop.dispatcher.post(AckIn(loop.sub, TERM, fids, ()))
    await loop.settle()
    assert loop.dispatcher.acked == 3


async def test_another_role_or_term_still_ends_the_firing(loop: Loop) -> None:
    assert await loop.at(1000) == ["a"]
    await loop.raft_says(Role.LEADER, quorum=False)
    await loop.raft_says(Role.FOLLOWER, quorum=False)
    assert loop.sub.closing is not None and loop.sub.closing[1] == "not the leader any more"
    assert loop.dispatcher.term == 0
