"""The gRPC service of a placement node: the `ReportHost` streams and `GetPlacementInfo`.

A `ReportHost` handler checks the stream's first report, then only puts events on the
control loop's queue (placement/server.py) and writes the orders the loop queued for it:
every decision stays with the loop, which owns the streams. Kept out of the node so the
wire handling reads apart from the control logic. This module and the loop's stream
closes are the only places that turn placement errors into status codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from placement.api.v1 import placement_pb2 as pb
from placement.config import PlacementConfig
from placement.errors import InvalidHostError
from placement.events import Event, ReportIn, StreamClosed, StreamOpened
from placement.membership import Membership
from placement.streams import HostStream, table_proto, validate_report
from raftkit.node import RaftStatus, Role
from raftkit.outbox import OutboxWriter
from raftkit.wire import Malformed, first_request, lenient, refusal, unary_handler

SERVICE = "actorflow.placement.v1.Placement"


class PlacementService:
    def __init__(
        self,
        config: PlacementConfig,
        *,
        post: Callable[[Event], None],
        status: Callable[[], RaftStatus],
        membership: Callable[[], Membership],
    ) -> None:
        """`post` puts an event on the control loop's queue; `status` and `membership`
        read the node's current Raft status and applied membership."""
        self.config = config
        self._post = post
        self._status = status
        self._membership = membership

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ReportHost": grpc.stream_stream_rpc_method_handler(
                    self._report_host,
                    request_deserializer=lenient(pb.HostReport),
                    response_serializer=None,  # orders are pre-encoded bytes
                ),
                "GetPlacementInfo": unary_handler(
                    "GetPlacementInfo", self._info, pb.GetPlacementInfoRequest, pb.PlacementInfo
                ),
            },
        )

    async def _report_host(
        self, requests: AsyncIterator[pb.HostReport], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        first = await first_request(requests, context, "ReportHost", pb.HostReport)
        if first is None:
            return
        try:
            record = validate_report(
                first, self.config.max_actor_types, self.config.max_name_length
            )
        except InvalidHostError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        stream = HostStream(record)
        stream.handler = asyncio.current_task()
        reply: asyncio.Future[tuple[grpc.StatusCode, str] | bytes | None]
        reply = asyncio.get_running_loop().create_future()
        self._post(StreamOpened(stream, reply))
        writer: OutboxWriter | None = None
        try:
            # From here the control loop may close the stream (cancelling this task)
            # at any await, the verdict's included: every way out goes through finally.
            verdict = await reply
            if isinstance(verdict, bytes):
                await context.write(verdict)  # not registered: nothing cancels it
                return
            if verdict is not None:
                await context.abort(*verdict)
            writer = OutboxWriter(context, stream.outbox)
            await self._read_reports(stream, requests)
        except asyncio.CancelledError:
            if stream.closing is None:
                raise
        finally:
            stream.handler = None  # leaving: a close from now on only sets the status
            self._post(StreamClosed(stream))
            if writer is not None:
                await writer.stop()
        if stream.closing is not None and stream.closing[0] is not grpc.StatusCode.OK:
            await context.abort(*stream.closing)

    async def _read_reports(self, stream: HostStream, requests: AsyncIterator[Any]) -> None:
        """Hand the stream's reports to the control loop until it ends; one that did not
        parse closes it (INVALID_ARGUMENT)."""
        async for report in requests:
            if isinstance(report, Malformed):
                message = refusal("ReportHost", pb.HostReport, report)
                stream.close(grpc.StatusCode.INVALID_ARGUMENT, message)
                return
            self._post(ReportIn(stream, report))

    async def _info(
        self, request: pb.GetPlacementInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PlacementInfo:
        status = self._status()
        state = self._membership()
        return pb.PlacementInfo(
            node_id=self.config.node_id,
            is_leader=status.role is Role.LEADER,
            leader_address=self.config.api_address_of(status.leader) or "",
            term=status.term,
            table_version=state.version,
            hosts=table_proto(state, status.term, self.config.virtual_nodes).hosts,
            has_quorum=status.has_quorum,
        )
