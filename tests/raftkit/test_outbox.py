"""OutboxWriter against a real grpc.aio server on loopback: a stream ended while one of
its writes is still in gRPC's hands gets its status all the same (a cancelled write
left the client waiting forever: see raftkit.outbox)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from raftkit.outbox import TASK_NAME, OutboxWriter

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    method: grpc.RpcMethodHandler[Any, Any] = grpc.stream_stream_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"S": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _read_to_end(address: str) -> tuple[list[bytes], grpc.StatusCode, str]:
    """Open the stream, send one message, read everything; the messages and the status."""
    async with grpc.aio.insecure_channel(address) as channel:
        call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream("/t.T/S")()
        await call.write(b"hello")
        received: list[bytes] = []
        async with asyncio.timeout(10):  # the bug under test is a client waiting forever
            try:
                while (message := await call.read()) is not grpc.aio.EOF:
                    assert isinstance(message, bytes)
                    received.append(message)
            except grpc.aio.AioRpcError as exc:
                return received, exc.code(), exc.details() or ""
            return received, await call.code(), await call.details()


async def test_a_stream_ended_mid_write_still_sends_its_status() -> None:
    async def handler(requests: AsyncIterator[bytes], context: Any) -> None:
        await anext(aiter(requests))
        outbox: asyncio.Queue[bytes] = asyncio.Queue()
        outbox.put_nowait(b"order")
        writer = OutboxWriter(context, outbox)
        while not outbox.empty():  # the writer takes it and starts the write in one step
            await asyncio.sleep(0)
        await writer.stop()
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused")

    server, address = await _serve(handler)
    try:
        for _ in range(5):
            received, code, details = await _read_to_end(address)
            assert (received, code, details) == (
                [b"order"],
                grpc.StatusCode.FAILED_PRECONDITION,
                "refused",
            )
    finally:
        await server.stop(0)


async def test_messages_go_out_in_order_and_an_idle_writer_stops_at_once() -> None:
    stopped = asyncio.Event()

    async def handler(requests: AsyncIterator[bytes], context: Any) -> None:
        await anext(aiter(requests))
        outbox: asyncio.Queue[bytes] = asyncio.Queue()
        writer = OutboxWriter(context, outbox)
        for i in range(50):
            outbox.put_nowait(b"m%d" % i)
        while not outbox.empty():
            await asyncio.sleep(0.001)
        await writer.stop(grace_s=30)  # what is in flight finishes; nothing waits 30 s
        stopped.set()

    server, address = await _serve(handler)
    try:
        received, code, _ = await _read_to_end(address)
        assert code is grpc.StatusCode.OK
        assert received == [b"m%d" % i for i in range(50)]
        assert stopped.is_set()
    finally:
        await server.stop(0)


async def test_stop_after_the_peer_went_away_does_not_raise() -> None:
    writers: asyncio.Queue[tuple[OutboxWriter, asyncio.Queue[bytes]]] = asyncio.Queue()

    async def handler(requests: AsyncIterator[bytes], context: Any) -> None:
        await anext(aiter(requests))
        outbox: asyncio.Queue[bytes] = asyncio.Queue()
        writers.put_nowait((OutboxWriter(context, outbox), outbox))
        async for _ in requests:
            pass

    server, address = await _serve(handler)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream("/t.T/S")()
            await call.write(b"hello")
            async with asyncio.timeout(10):
                writer, outbox = await writers.get()
            call.cancel()
        outbox.put_nowait(b"too late")  # its write fails: the call is gone
        async with asyncio.timeout(10):
            await writer.stop()  # returns, raising nothing
        assert _writer_tasks() == []
    finally:
        await server.stop(0)


class _StuckContext:
    """A call whose writes never finish (a peer that stopped reading)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.started.set()
        await asyncio.Event().wait()


async def test_a_stuck_write_is_given_up_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    context, outbox = _StuckContext(), asyncio.Queue[bytes]()
    writer = OutboxWriter(context, outbox)  # type: ignore[arg-type]
    outbox.put_nowait(b"x")
    async with asyncio.timeout(10):
        await context.started.wait()
        await writer.stop(grace_s=0.05)
    assert _writer_tasks() == []
    assert "still pending after 0.05s" in caplog.text


async def test_a_cancelled_stop_takes_the_writer_with_it() -> None:
    context, outbox = _StuckContext(), asyncio.Queue[bytes]()
    writer = OutboxWriter(context, outbox)  # type: ignore[arg-type]
    outbox.put_nowait(b"x")
    async with asyncio.timeout(10):
        await context.started.wait()
        stop = asyncio.create_task(writer.stop(grace_s=30))
        await asyncio.sleep(0)  # stop is now waiting on the write
        stop.cancel()  # as grpc cancels a handler whose client went away
        with pytest.raises(asyncio.CancelledError):
            await stop
        while _writer_tasks():
            await asyncio.sleep(0.01)


def _writer_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == TASK_NAME and not t.done()]
