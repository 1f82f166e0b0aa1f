"""A request aiohttp cannot parse gets the sidecar's JSON error shape too (400
`ERR_MALFORMED_REQUEST`, `sidecar.http_errors.JsonErrorRunner`), not aiohttp's plain
text, over a real socket; the server goes on serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.http import json_errors
from sidecar.http_errors import MAX_HEADERS, MAX_LINE_BYTES, JsonErrorRunner


async def _ok(request: web.Request) -> web.Response:
    return web.Response(status=204)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application(middlewares=[json_errors])
    app.router.add_get("/ok", _ok)
    runner = JsonErrorRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    yield server.sockets[0].getsockname()[1]
    await runner.cleanup()


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # the server closes the connection after it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()


BAD = {
    "request line too long": _get("/" + "a" * (MAX_LINE_BYTES + 10)),
    "header too long": _get("/ok", "X-Big: " + "b" * (MAX_LINE_BYTES + 10)),
    "too many headers": _get("/ok", *(f"X-H{i}: v" for i in range(MAX_HEADERS + 5))),
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "broken framing": b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
}


@pytest.mark.parametrize("what", sorted(BAD))
async def test_an_unparsable_request_is_400_json_and_the_server_goes_on(
    port: int, what: str
) -> None:
    status, headers, body = await _exchange(port, BAD[what])
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert answer["message"].startswith("the request does not parse: ")
    status, _, _ = await _exchange(port, _get("/ok"))
    assert status == 204
