"""Every HTTP error of the sidecar is JSON, including aiohttp's own answers and a
handler's unexpected failure (`sidecar.http.json_errors`), on a small app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from sidecar.http import json_errors


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def _fine(request: web.Request) -> web.Response:
    return web.Response(status=418, text="kept as it is")


async def _read(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[json_errors], client_max_size=1024)
    app.router.add_get("/boom", _boom)
    app.router.add_post("/fine", _fine)
    app.router.add_post("/read", _read)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _json(resp: ClientResponse) -> dict[str, str]:
    body: dict[str, str] = await resp.json()
    return body


async def test_an_unexpected_failure_is_500_json_and_the_server_goes_on(
    client: TestClient[web.Request, web.Application],
) -> None:
    for _ in range(2):
        async with client.get("/boom") as resp:
            assert resp.status == 500
            assert (await _json(resp))["errorCode"] == "ERR_INTERNAL"


async def test_routing_answers_are_json(client: TestClient[web.Request, web.Application]) -> None:
    async with client.get("/nowhere") as resp:
        assert resp.status == 404
        assert (await _json(resp)) == {
            "errorCode": "ERR_ROUTE_NOT_FOUND",
            "message": "no route for GET /nowhere",
        }
    async with client.put("/fine") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await _json(resp))["errorCode"] == "ERR_METHOD_NOT_ALLOWED"


async def test_a_body_over_the_limit_is_413_json(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.post("/read", data=b"x" * 4096) as resp:
        assert resp.status == 413
        assert (await _json(resp))["errorCode"] == "ERR_PAYLOAD_TOO_LARGE"


async def test_a_handler_answer_passes_untouched(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.post("/fine") as resp:
        assert resp.status == 418 and await resp.text() == "kept as it is"
