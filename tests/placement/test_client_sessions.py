"""The placement client's streams: one that placement ends (here at once, with
UNAVAILABLE) leaves nothing of itself behind. grpc feeds a stream's requests from a task
of its own, and cancels it only with a call it cancels itself; a call the server ended
left that task waiting on the dead session's queue for ever (until garbage collection
destroyed it, pending: "Task was destroyed but it is pending!" and "aclose():
asynchronous generator is already running" in a starved sidecar's log)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from placement.api.v1 import placement_pb2 as pb
from placement.client import ClientConfig, PlacementClient
from placement.table import TableHost

ME = TableHost("s1", "127.0.0.1:1", "app", "default", ("t",), 1)


class Ending:
    """Reads the host's first report, then ends the stream."""

    def __init__(self) -> None:
        self.sessions = 0
        self.changed = asyncio.Event()

    async def ReportHost(self, request_iterator: Any, context: Any) -> Any:
        await anext(aiter(request_iterator))
        self.sessions += 1
        self.changed.set()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "placement is going away")
        yield pb.PlacementOrder()  # unreachable: makes this a response stream


def _feeders() -> list[asyncio.Task[Any]]:
    """grpc's tasks that feed a stream's requests, still waiting."""
    return [
        t for t in asyncio.all_tasks()
        if "_consume_request_iterator" in repr(t.get_coro()) and not t.done()
    ]  # fmt: skip


async def test_a_stream_placement_ends_leaves_no_task_waiting() -> None:
    server = grpc.aio.server()
    servicer = Ending()
    report_host = grpc.stream_stream_rpc_method_handler(
        servicer.ReportHost,
        request_deserializer=pb.HostReport.FromString,
        response_serializer=pb.PlacementOrder.SerializeToString,
    )
    handler = grpc.method_handlers_generic_handler(
        "actorflow.placement.v1.Placement", {"ReportHost": report_host}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = PlacementClient(
        ClientConfig((f"127.0.0.1:{port}",), reconnect_min_s=0.01, reconnect_max_s=0.02), ME
    )
    try:
        await client.start()
        async with asyncio.timeout(20):
            while servicer.sessions < 5:
                servicer.changed.clear()
                await servicer.changed.wait()
        await client.stop()
        for _ in range(20):  # let cancellations and stream ends run
            await asyncio.sleep(0)
        assert _feeders() == []
    finally:
        await client.stop()
        await server.stop(None)
