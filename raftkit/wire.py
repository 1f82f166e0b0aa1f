"""Requests whose bytes do not parse: INVALID_ARGUMENT naming the RPC, for every service.

grpc runs a method's request deserializer before the method; when it raises, grpc
answers a bare UNKNOWN ("Exception deserializing request!", or "Unexpected
DecodeError"), where DESIGN 4.5 asks for a clear code. `lenient` makes a deserializer
that hands on a `Malformed` marker instead, and `guarded` wraps the method so that the
marker is answered INVALID_ARGUMENT ("CreateReminder: the request is not a valid
CreateReminderRequest (...)") and never reaches it. `unary_handler` puts both together
for the common case of a grpc.aio unary method. A method reading a request stream gets
the markers among its messages and answers them with `refusal`'s text itself."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

__all__ = ["Malformed", "first_request", "guarded", "lenient", "refusal", "unary_handler"]


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


def refusal(rpc: str, message_type: type[Message], request: Malformed) -> str:
    """The INVALID_ARGUMENT message for `request`, which did not parse."""
    return f"{rpc}: the request is not a valid {message_type.DESCRIPTOR.name} ({request.error})"


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

    def refuse(request: Malformed) -> str:
        return refusal(rpc, message_type, request)

    if not aio:
        return _sync(refuse, behaviour)
    if server_streaming and inspect.isasyncgenfunction(behaviour):
        return _stream(refuse, behaviour)
    return _call(refuse, behaviour)


async def first_request(
    requests: AsyncIterator[Any], context: Any, rpc: str, message_type: type[Message]
) -> Any:
    """The first message of a request stream read through a lenient deserializer, or
    None when the stream ended before one; one that did not parse is answered here."""
    try:
        first = await anext(aiter(requests))
    except StopAsyncIteration:
        return None
    if isinstance(first, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal(rpc, message_type, first))
    return first


def unary_handler(
    rpc: str, behaviour: Callable[..., Any], request: type[Message], response: type[Message]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A grpc.aio unary method handler with a lenient deserializer."""
    return grpc.unary_unary_rpc_method_handler(
        guarded(rpc, request, behaviour),
        request_deserializer=lenient(request),
        response_serializer=response.SerializeToString,
    )
