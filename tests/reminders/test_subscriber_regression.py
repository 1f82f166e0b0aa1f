"""`TriggerSubscriber` and a reminders service that went back in time: a leader at a
term below the one the subscriber saw (restored from an older copy, or started empty)
refuses its known term for good. Refused in a row for the grace, the subscriber adopts
the older term, says so through `on_regress`, and its triggers flow again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from reminders.api.v1 import reminders_pb2 as pb
from reminders.client import TriggerSubscriber
from reminders.names import SERVICE

TERM = 1  # the service's term, below the subscriber's


@pytest.fixture
async def gone_back() -> AsyncIterator[tuple[str, list[int]]]:
    """A leader at term 1: refuses a subscribe that knows a newer term (as the real
    one does, with no leader hint), else sends one trigger and reads its ack. Also
    yields the known terms it was asked with."""
    asked: list[int] = []

    async def watch(requests: AsyncIterator[pb.TriggerStreamRequest], context: Any) -> Any:
        first = await anext(aiter(requests))
        asked.append(first.subscribe.known_term)
        if first.subscribe.known_term > TERM:
            yield pb.TriggerBatch(term=TERM, not_leader=pb.NotLeader())
            return
        trigger = pb.Trigger(fire_id=7, key=pb.ReminderKey(name="t"), due_ms=1)
        yield pb.TriggerBatch(term=TERM, triggers=[trigger])
        async for _ in requests:
            pass

    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        watch,
        request_deserializer=pb.TriggerStreamRequest.FromString,
        response_serializer=pb.TriggerBatch.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"WatchTriggers": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", asked
    await server.stop(None)


async def test_a_service_refusing_a_newer_term_for_the_grace_is_followed(
    gone_back: tuple[str, list[int]],
) -> None:
    address, asked = gone_back
    delivered: asyncio.Queue[tuple[int, list[int]]] = asyncio.Queue()
    regressed: list[tuple[int, int]] = []

    async def handler(term: int, triggers: list[pb.Trigger]) -> None:
        delivered.put_nowait((term, [t.fire_id for t in triggers]))

    async def on_regress(old: int, new: int) -> None:
        regressed.append((old, new))

    sub = TriggerSubscriber(
        [address], host="h", namespace="ns", app_id="app", handler=handler,
        regression_grace_s=0.5, on_regress=on_regress,
    )  # fmt: skip
    sub.highest_term = 4  # what it saw before the service went back
    task = asyncio.create_task(sub.run())
    try:
        assert await asyncio.wait_for(delivered.get(), 30) == (TERM, [7])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert regressed == [(4, TERM)]
    assert sub.stats.regressions == 1 and sub.highest_term == TERM
    refusals = asked.index(TERM)
    assert refusals >= 2 and set(asked[:refusals]) == {4}  # refused in a row first
