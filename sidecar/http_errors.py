"""The one shape of every HTTP error the sidecar answers (DESIGN 3.2):
`{"errorCode": "...", "message": "..."}` as JSON.

`error` builds it for routes and middlewares. `JsonErrorRunner` covers the answers
aiohttp gives before any route or middleware runs: a request it cannot parse (a request
line or a header over `MAX_LINE_BYTES`, more than `MAX_HEADERS` headers, broken framing,
bytes that are not HTTP) is answered 400 `ERR_MALFORMED_REQUEST` in the same JSON shape,
where aiohttp itself answers plain text; the connection is closed, and the server goes on.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["MAX_HEADERS", "MAX_LINE_BYTES", "JsonErrorRunner", "error"]

MAX_LINE_BYTES = 8190  # aiohttp's default, for the request line and each header
MAX_HEADERS = 128


def error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"errorCode": code, "message": message}),
        content_type="application/json",
    )


class _JsonErrorHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        answer = super().handle_error(request, status, exc, message)  # logs; may raise
        if status >= 500:
            return answer  # the server's own failure: aiohttp's answer, logged above
        text = " ".join((message or answer.reason or "").split())
        response = error(status, "ERR_MALFORMED_REQUEST", f"the request does not parse: {text}")
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparsable requests in the JSON shape."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_LINE_BYTES)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same state; only the handler class differs
        return server
