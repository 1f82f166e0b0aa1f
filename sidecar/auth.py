"""The API token (Dapr's `dapr-api-token`): when the sidecar has one, every app call must
carry it, on gRPC as metadata and on HTTP as a header; otherwise UNAUTHENTICATED / 401.

Health and metrics stay open (probes carry no token). Sidecar-to-sidecar calls are not
app calls and are not checked here; they are for mutual TLS to protect.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from aiohttp import web

from sidecar.http_errors import error

TOKEN_KEY = "dapr-api-token"
APP_SERVICE_PREFIX = "/TaskHubSidecarService/"
OPEN_PATHS = frozenset({"/v1.0/healthz", "/metrics"})


def token_matches(expected: str, given: str | bytes | None) -> bool:
    if given is None:
        return False
    if isinstance(given, bytes):
        given = given.decode(errors="replace")
    return hmac.compare_digest(expected.encode(), given.encode())


def _deny(message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(abort)


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        method = str(getattr(handler_call_details, "method", ""))
        if method.startswith(APP_SERVICE_PREFIX):
            metadata = dict(getattr(handler_call_details, "invocation_metadata", None) or ())
            if not token_matches(self._token, metadata.get(TOKEN_KEY)):
                denied: Any = _deny(f"missing or wrong {TOKEN_KEY} metadata")
                return cast("grpc.RpcMethodHandler[_Req, _Resp]", denied)
        return await continuation(handler_call_details)


def token_middleware(token: str) -> Any:
    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not token_matches(
            token, request.headers.get(TOKEN_KEY)
        ):
            return error(401, "ERR_UNAUTHENTICATED", f"missing or wrong {TOKEN_KEY}")
        return await handler(request)

    return check
