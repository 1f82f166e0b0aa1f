"""`RemindersClient` leaves a node that answers nothing (a host cut off by the network:
no reset, no reply) for another one within its per-attempt timeout; `TriggerSubscriber`
keeps looking for a leader at a short pace."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from reminders.api.v1 import reminders_pb2 as pb
from reminders.client import RECONNECT_MAX_S, RemindersClient, TriggerSubscriber
from reminders.names import SERVICE


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never says anything."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = asyncio.Event()

    async def accept() -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        while not stop.is_set():
            conn, _ = await loop.sock_accept(sock)
            held.append(conn)

    task = asyncio.create_task(accept())
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    task.cancel()
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture
async def answering() -> AsyncIterator[str]:
    """A node that answers CreateReminder."""

    async def create(
        request: pb.CreateReminderRequest, context: object
    ) -> pb.CreateReminderResponse:
        return pb.CreateReminderResponse(reminder=pb.Reminder(key=request.key))

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "CreateReminder": grpc.unary_unary_rpc_method_handler(
                        create,
                        request_deserializer=pb.CreateReminderRequest.FromString,
                        response_serializer=pb.CreateReminderResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)


async def test_a_silent_node_is_left_for_another(black_hole: str, answering: str) -> None:
    key = pb.ReminderKey(namespace="ns", app_id="app", actor_type="t", actor_id="a", name="n")
    async with RemindersClient(
        [black_hole, answering], timeout_s=10.0, attempt_timeout_s=0.5
    ) as client:
        # Without a per-attempt timeout the first attempt, at the silent node, would use
        # the whole 10 s deadline and the call would fail with DEADLINE_EXCEEDED.
        reminder = await client.create(key, due_time="1h")
    assert reminder.key == key


async def test_the_deadline_still_bounds_the_call(black_hole: str) -> None:
    key = pb.ReminderKey(namespace="ns", app_id="app", actor_type="t", actor_id="a", name="n")
    async with RemindersClient([black_hole], timeout_s=1.5, attempt_timeout_s=0.5) as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.create(key, due_time="1h")
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_subscriber_looking_for_a_leader_asks_again_within_a_quarter_second() -> None:
    """While no node answers as leader (an election after the leader died) a
    subscriber's pause between attempts grows only to RECONNECT_MAX_S: firing resumes
    when it finds the new leader, so a pause of a second cost up to a second."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there: every attempt fails at once
    pauses: list[float] = []
    enough = asyncio.Event()

    async def record(delay_s: float) -> None:
        pauses.append(delay_s)
        if len(pauses) >= 12:
            enough.set()
        await asyncio.sleep(0)

    async def handler(term: int, triggers: list[pb.Trigger]) -> None:
        return None

    sub = TriggerSubscriber(
        [closed], host="h", namespace="ns", app_id="app", handler=handler, sleep=record
    )
    task = asyncio.create_task(sub.run())
    await asyncio.wait_for(enough.wait(), 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pauses[0] == 0.05
    assert max(pauses) == RECONNECT_MAX_S == 0.25
