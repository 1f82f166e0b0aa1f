"""Serve (and call) the Durable Task protocol under the paths the Dapr SDK uses.

The SDK's messages and service have no proto package, so it calls
`/TaskHubSidecarService/<Method>`. Ours live in `actorflow.taskhub.v1` so that both sets of
definitions can share one descriptor pool; the generated stub would therefore use the wrong
path. Instead, every method of our service descriptor is registered under the SDK's path
with our own message classes as (de)serializers. The method table is derived from the
descriptor, so adding a method to the `.proto` is all it takes.

A servicer is any object with a method per RPC name (`Hello`, `StartInstance`, ...), in
the shape grpc expects for the method's kind (sync or `grpc.aio`: grpc decides by the
server type). Methods it lacks answer UNIMPLEMENTED, naming the RPC. A request whose bytes
are not the method's message answers INVALID_ARGUMENT, naming the RPC, and never reaches
the servicer (`raftkit.wire`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from raftkit.wire import guarded, lenient
from sidecar.api.taskhub.v1 import taskhub_pb2

# The SDK's service has no package: this is the path prefix it calls.
TASKHUB_SERVICE_NAME = "TaskHubSidecarService"


@dataclass(frozen=True, slots=True)
class TaskHubMethod:
    name: str
    request_type: type[Message]
    response_type: type[Message]
    server_streaming: bool
    client_streaming: bool

    @property
    def path(self) -> str:
        return f"/{TASKHUB_SERVICE_NAME}/{self.name}"


def _method(desc: MethodDescriptor) -> TaskHubMethod:
    return TaskHubMethod(
        name=desc.name,
        request_type=message_factory.GetMessageClass(desc.input_type),
        response_type=message_factory.GetMessageClass(desc.output_type),
        server_streaming=desc.server_streaming,
        client_streaming=desc.client_streaming,
    )


def taskhub_methods() -> dict[str, TaskHubMethod]:
    service = taskhub_pb2.DESCRIPTOR.services_by_name[TASKHUB_SERVICE_NAME]
    return {m.name: _method(m) for m in service.methods}


def unimplemented_message(name: str) -> str:
    return f"{name} is not implemented by actorflow"


def _unimplemented(name: str, *, aio: bool) -> Callable[..., Any]:
    if aio:

        async def async_handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, unimplemented_message(name))

        return async_handler

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, unimplemented_message(name))

    return handler


class _CatchAll(grpc.GenericRpcHandler):
    """Answers any method nobody else serves with UNIMPLEMENTED naming it (grpc's own
    answer, "Method not found!", does not say which)."""

    def __init__(self, *, aio: bool) -> None:
        self._aio = aio

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = str(getattr(handler_call_details, "method", "")).rsplit("/", 1)[-1]
        return grpc.unary_unary_rpc_method_handler(_unimplemented(method, aio=self._aio))


def unknown_method_handler(*, aio: bool = False) -> grpc.GenericRpcHandler:
    """Register after every real handler: it claims all remaining paths."""
    return _CatchAll(aio=aio)


def _handler(
    method: TaskHubMethod, behaviour: Callable[..., Any], *, aio: bool
) -> grpc.RpcMethodHandler[Any, Any]:
    decode = lenient(method.request_type)
    encode = method.response_type.SerializeToString
    guarded_behaviour = guarded(
        method.name, method.request_type, behaviour, aio=aio,
        server_streaming=method.server_streaming,
    )  # fmt: skip
    if method.client_streaming or not method.server_streaming:
        if method.client_streaming:
            raise ValueError(f"client-streaming method {method.name} is not supported")
        return grpc.unary_unary_rpc_method_handler(
            guarded_behaviour, request_deserializer=decode, response_serializer=encode
        )
    return grpc.unary_stream_rpc_method_handler(
        guarded_behaviour, request_deserializer=decode, response_serializer=encode
    )


def taskhub_generic_handler(servicer: object, *, aio: bool = False) -> grpc.GenericRpcHandler:
    """A handler to pass to `server.add_generic_rpc_handlers((handler,))`; `aio` says
    whether the server is a `grpc.aio` server (then the servicer's methods are async)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, method in taskhub_methods().items():
        behaviour = getattr(servicer, name, None) or _unimplemented(name, aio=aio)
        handlers[name] = _handler(method, behaviour, aio=aio)
    return grpc.method_handlers_generic_handler(TASKHUB_SERVICE_NAME, handlers)


def taskhub_stub(channel: grpc.Channel) -> Mapping[str, Callable[..., Any]]:
    """Callables by RPC name, speaking our messages over the SDK's paths (for tests and
    tools that talk to a sidecar the way the SDK does)."""
    calls: dict[str, Callable[..., Any]] = {}
    for name, method in taskhub_methods().items():
        factory = channel.unary_stream if method.server_streaming else channel.unary_unary
        calls[name] = factory(
            method.path,
            request_serializer=method.request_type.SerializeToString,
            response_deserializer=method.response_type.FromString,
        )
    return calls
