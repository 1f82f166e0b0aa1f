"""The etcd store's gRPC plumbing: one channel per endpoint with etcd's method paths on
it, the channel options, and how an RPC error is read (retryable, too large, out of
space)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
import grpc.aio

from sidecar.api.etcd.v3 import kv_pb2 as pb

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_TOO_LARGE = ("too many operations in txn request", "request is too large", "larger than max")
_NO_SPACE = "database space exceeded"
_NO_SPACE_HINT = (
    "etcd is out of space (its --quota-backend-bytes): compact its history, defragment "
    "every member and disarm the NOSPACE alarm (deploy/README.md, 'etcd out of space')"
)


@dataclass(eq=False)
class _Endpoint:
    address: str
    channel: grpc.aio.Channel
    range: grpc.aio.UnaryUnaryMultiCallable[pb.RangeRequest, pb.RangeResponse] = field(init=False)
    txn: grpc.aio.UnaryUnaryMultiCallable[pb.TxnRequest, pb.TxnResponse] = field(init=False)
    status: grpc.aio.UnaryUnaryMultiCallable[pb.StatusRequest, pb.StatusResponse] = field(
        init=False
    )

    def __post_init__(self) -> None:
        ch = self.channel
        self.range = ch.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=pb.RangeRequest.SerializeToString,
            response_deserializer=pb.RangeResponse.FromString,
        )
        self.txn = ch.unary_unary(
            "/etcdserverpb.KV/Txn",
            request_serializer=pb.TxnRequest.SerializeToString,
            response_deserializer=pb.TxnResponse.FromString,
        )
        self.status = ch.unary_unary(
            "/etcdserverpb.Maintenance/Status",
            request_serializer=pb.StatusRequest.SerializeToString,
            response_deserializer=pb.StatusResponse.FromString,
        )

    async def connected(self, timeout_s: float) -> bool:
        """READY within the timeout; False means nothing sent to this endpoint can have
        arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        state = self.channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            remaining = deadline - loop.time()
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE or remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return False
            state = self.channel.get_state(try_to_connect=True)
        return True


def _channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # etcd's default keepalive policy sends GOAWAY to pings more often than 5 s.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
    ]


def _too_large(exc: grpc.aio.AioRpcError) -> bool:
    return any(marker in (exc.details() or "") for marker in _TOO_LARGE)


def _describe(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


class _NotConnected(Exception):
    pass
