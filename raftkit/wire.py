"""Requests whose bytes do not parse: INVALID_ARGUMENT naming the RPC, for every service.

grpc runs a method's request deserializer before the method; when it raises, grpc
answers a bare UNKNOWN ("Exception deserializing request!", or "Unexpected
DecodeError"), where DESIGN 4.5 asks for a clear code. `lenient` makes a deserializer
that hands on a `Malformed` marker instead, and `guarded` wraps the method so that the
marker is answered INVALID_ARGUMENT ("CreateReminder: the request is not a valid
CreateReminderRequest (...)") and never reaches it. `unary_handler` puts both together
for the common case of a grpc.aio unary method."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

__all__ = ["Malformed", "guarded", "lenient", "unary_handler"]


@dataclass(frozen=True, slots=True)
class Malformed:
    """What a lenient deserializer hands on for bytes that do not parse."""

    error: str


def lenient(message_type: type[Message]) -> Callable[[bytes], Any]:
    parse = message_type.FromString

    def decode(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return Malformed(str(exc))

    return decode


Refusal = Callable[[Malformed], str]


def _sync(refusal: Refusal, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def sync(request: Any, context: Any) -> Any:  # unary, or returns the stream
        if isinstance(request, Malformed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal(request))
        return behaviour(request, context)

    return sync


def _stream(refusal: Refusal, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def stream(request: Any, context: Any) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal(request))
        async for item in behaviour(request, context):
            yield item

    return stream


def _call(refusal: Refusal, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def call(request: Any, context: Any) -> Any:  # unary, or a stream written by
        if isinstance(request, Malformed):  # the method through context.write()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal(request))
        return await behaviour(request, context)

    return call


def guarded(
    rpc: str,
    message_type: type[Message],
    behaviour: Callable[..., Any],
    *,
    aio: bool = True,
    server_streaming: bool = False,
) -> Callable[..., Any]:
    """`behaviour` (a unary or server-streaming method), answering INVALID_ARGUMENT for
    a request its lenient deserializer could not parse."""

    def refusal(request: Malformed) -> str:
        return f"{rpc}: the request is not a valid {message_type.DESCRIPTOR.name} ({request.error})"

    if not aio:
        return _sync(refusal, behaviour)
    if server_streaming and inspect.isasyncgenfunction(behaviour):
        return _stream(refusal, behaviour)
    return _call(refusal, behaviour)


def unary_handler(
    rpc: str, behaviour: Callable[..., Any], request: type[Message], response: type[Message]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A grpc.aio unary method handler with a lenient deserializer."""
    return grpc.unary_unary_rpc_method_handler(
        guarded(rpc, request, behaviour),
        request_deserializer=lenient(request),
        response_serializer=response.SerializeToString,
    )
