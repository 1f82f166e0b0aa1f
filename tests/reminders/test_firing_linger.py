"""The firing loop's linger, on a fake clock and a fake Raft: with firings in flight, a
reminder that falls due waits up to `fire_linger_ms` so that it leaves with others; with
nothing in flight it leaves at once; never before it is due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from raftkit.node import RaftStatus, Role
from reminders.api.v1 import reminders_pb2 as pb
from reminders.config import RemindersConfig
from reminders.firing import (
    AckIn,
    ChangesIn,
    Dispatcher,
    RaftChanged,
    Subscriber,
    SubscriberOpened,
)
from reminders.machine import Key
from reminders.replica import Replica
from reminders.testing import FakeClock, LeadingRaft, replica_due

NOW = 1_700_000_000_000
TERM = 3
LINGER_MS = 10
APP = ("ns", "app")


def _key(name: str) -> Key:
    return (*APP, "T", "a1", name)


def _replica(due_in_ms: dict[str, int]) -> Replica:
    return replica_due({_key(name): ms for name, ms in due_in_ms.items()}, NOW, TERM)


class Loop:
    """A dispatcher running on the fake clock, with one subscriber of APP."""

    def __init__(self, dispatcher: Dispatcher, clock: FakeClock) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.sub = Subscriber(host="s0", app=APP, actor_types=frozenset())

    async def at(self, ms: int) -> list[pb.Trigger]:
        """Move the clock to NOW + ms, let the loop act, and take what it sent."""
        self.clock.ms = NOW + ms
        self.dispatcher.post(ChangesIn(0, []))  # wakes the loop; an old seq changes nothing
        for _ in range(50):  # the loop handles one wake-up in a few passes
            await asyncio.sleep(0)
        sent: list[pb.Trigger] = []
        while not self.sub.outbox.empty():
            sent.extend(pb.TriggerBatch.FromString(self.sub.outbox.get_nowait()).triggers)
        return sent

    def ack(self, triggers: list[pb.Trigger]) -> None:
        fids = tuple(t.fire_id for t in triggers)
        self.dispatcher.post(AckIn(self.sub, TERM, fids, ()))


@pytest.fixture
async def loop(tmp_path: Path) -> AsyncIterator[Loop]:
    config = RemindersConfig(
        node_id="r0", api_address="127.0.0.1:7101", raft_address="127.0.0.1:7201",
        peers={}, data_dir=tmp_path, allow_insecure_raft=True, fire_linger_ms=LINGER_MS,
    )  # fmt: skip
    clock = FakeClock(NOW)
    replica = _replica({"a": 1000, "b": 1005, "c": 1030})
    dispatcher = Dispatcher(config, replica, LeadingRaft(TERM), clock)  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    status = RaftStatus("127.0.0.1:7201", Role.LEADER, TERM, "127.0.0.1:7201", True, 1, 1, True)
    dispatcher.post(RaftChanged(status))
    loop = Loop(dispatcher, clock)
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    for _ in range(50):  # the `lead` command is proposed and applied
        await asyncio.sleep(0)
    dispatcher.post(SubscriberOpened(loop.sub, reply))
    assert await asyncio.wait_for(reply, 5) == TERM
    yield loop
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


def _names(triggers: list[pb.Trigger]) -> list[str]:
    return [t.key.name for t in triggers]


async def test_a_due_reminder_waits_for_others_only_while_firings_are_in_flight(
    loop: Loop,
) -> None:
    assert await loop.at(999) == []  # never early
    first = await loop.at(1000)
    assert _names(first) == ["a"]  # nothing in flight: at once
    assert await loop.at(1005) == []  # "b" is due, "a" in flight: it lingers
    assert await loop.at(1014) == []
    second = await loop.at(1015)  # the linger of "b" is over
    assert _names(second) == ["b"]
    loop.ack(first + second)
    assert await loop.at(1029) == []
    assert _names(await loop.at(1030)) == ["c"]  # nothing in flight again: at once
