"""Actor calls between sidecars: the ActorPeer gRPC service and a pool of channels.

A call carries the placement table version the caller routed by. The callee waits
(bounded) while its table is locked, then checks that it owns the actor under its own
table: if not, it answers NOT_OWNER with its version and the caller retries once its own
table is at least that new.

Under load, calls to one peer travel pipelined over one `CallActorStream` per peer:
calls that queue up while a batch is in flight leave together in the next message
(`ActorCallBatch`), and results come back by `call_id` in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from raftkit.tls import TlsFiles
from raftkit.tls import channel as tls_channel
from raftkit.wire import Malformed, lenient, refusal, unary_handler
from sidecar.actors.base import ActorCallError, NotOwnerError, UnknownActorTypeError
from sidecar.api.v1 import actors_pb2 as pb

log = logging.getLogger(__name__)

SERVICE = "actorflow.sidecar.v1.ActorPeer"
_T = TypeVar("_T")
MAX_BATCH = 256

LocalInvoke = Callable[[str, str, str, bytes], Awaitable[bytes]]
WaitUnlocked = Callable[[], Awaitable[int]]  # returns the table version once unlocked


class PeerService:
    """Server side: runs calls from other sidecars against the local actor host."""

    def __init__(self, invoke: LocalInvoke, wait_unlocked: WaitUnlocked) -> None:
        self._invoke = invoke
        self._wait_unlocked = wait_unlocked

    async def run_call(self, call: pb.ActorCall) -> pb.ActorResult:
        try:
            version = await self._wait_unlocked()
        except TimeoutError:
            return pb.ActorResult(
                call_id=call.call_id, status=pb.CALL_STATUS_TIMEOUT, message="table locked"
            )
        try:
            payload = await self._invoke(
                call.actor.actor_type, call.actor.actor_id, call.method, call.payload
            )
        except NotOwnerError as exc:
            return pb.ActorResult(
                call_id=call.call_id,
                status=pb.CALL_STATUS_NOT_OWNER,
                message=str(exc),
                table_version=max(version, exc.table_version),
            )
        except UnknownActorTypeError as exc:
            return pb.ActorResult(
                call_id=call.call_id, status=pb.CALL_STATUS_UNKNOWN_TYPE, message=str(exc)
            )
        except ActorCallError as exc:
            return pb.ActorResult(
                call_id=call.call_id, status=pb.CALL_STATUS_ACTOR_ERROR, message=str(exc)
            )
        return pb.ActorResult(
            call_id=call.call_id, status=pb.CALL_STATUS_OK, payload=payload, table_version=version
        )

    async def _unary(self, call: pb.ActorCall, context: Any) -> pb.ActorResult:
        return await self.run_call(call)

    async def _stream(
        self, batches: AsyncIterator[pb.ActorCallBatch], context: Any
    ) -> AsyncIterator[pb.ActorResultBatch]:
        # None in `results`: a batch did not parse (`refused` says why); the call ends.
        results: asyncio.Queue[pb.ActorResult | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        refused: list[str] = []

        async def one(call: pb.ActorCall) -> None:
            results.put_nowait(await self.run_call(call))

        async def reader() -> None:
            async for batch in batches:
                if isinstance(batch, Malformed):
                    refused.append(refusal("CallActorStream", pb.ActorCallBatch, batch))
                    results.put_nowait(None)
                    return
                for call in batch.calls:
                    task = asyncio.create_task(one(call))
                    running.add(task)
                    task.add_done_callback(running.discard)

        read = asyncio.create_task(reader())
        try:
            while True:
                out = _more(await results.get(), results)
                done = [r for r in out if r is not None]
                if done:
                    yield pb.ActorResultBatch(results=done)
                if refused:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused[0])
        finally:
            read.cancel()
            for task in list(running):
                task.cancel()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "CallActor": unary_handler("CallActor", self._unary, pb.ActorCall, pb.ActorResult),
                "CallActorStream": grpc.stream_stream_rpc_method_handler(
                    self._stream,
                    request_deserializer=lenient(pb.ActorCallBatch),
                    response_serializer=pb.ActorResultBatch.SerializeToString,
                ),
            },
        )


def _more(first: _T, queue: asyncio.Queue[_T]) -> list[_T]:
    """`first` and whatever else `queue` holds already, MAX_BATCH in all at most."""
    out = [first]
    while not queue.empty() and len(out) < MAX_BATCH:
        out.append(queue.get_nowait())
    return out


class _PeerStream:
    """One pipelined stream to one peer; calls matched to results by call_id."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call: Any = channel.stream_stream(
            f"/{SERVICE}/CallActorStream",
            request_serializer=pb.ActorCallBatch.SerializeToString,
            response_deserializer=pb.ActorResultBatch.FromString,
        )()
        self._pending: dict[int, asyncio.Future[pb.ActorResult]] = {}
        self._outbox: list[pb.ActorCall] = []
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
        self.broken: BaseException | None = None

    async def call(self, call: pb.ActorCall) -> pb.ActorResult:
        if self.broken is not None:
            raise ConnectionError(f"peer stream broken: {self.broken}")
        fut: asyncio.Future[pb.ActorResult] = asyncio.get_running_loop().create_future()
        self._pending[call.call_id] = fut
        self._outbox.append(call)
        self._wake.set()
        try:
            return await fut
        finally:
            self._pending.pop(call.call_id, None)

    async def _send(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    batch, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
                    await self._call.write(pb.ActorCallBatch(calls=batch))
        except Exception as exc:
            self._break(exc)

    async def _receive(self) -> None:
        try:
            async for batch in self._call:
                for result in batch.results:
                    fut = self._pending.get(result.call_id)
                    if fut is not None and not fut.done():
                        fut.set_result(result)
            self._break(ConnectionError("peer closed the stream"))
        except Exception as exc:
            self._break(exc)

    def _break(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"peer stream broken: {exc}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._call.cancel()


class PeerPool:
    """Persistent channels (and pipelined streams) to other sidecars, by address."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self._tls = tls  # mutual TLS to the other sidecars' peer ports
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, _PeerStream] = {}
        self._ids = itertools.count(1)

    def next_call_id(self) -> int:
        return next(self._ids)

    async def call(self, address: str, call: pb.ActorCall, timeout: float) -> pb.ActorResult:
        stream = self._streams.get(address)
        if stream is None or stream.broken is not None:
            if stream is not None:
                await stream.close()
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = tls_channel(address, self._tls)
            stream = self._streams[address] = _PeerStream(channel)
        async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task
            return await stream.call(call)

    async def close(self) -> None:
        for stream in self._streams.values():
            await stream.close()
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
        self._streams.clear()
        self._channels.clear()
