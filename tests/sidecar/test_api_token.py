"""With an API token, app calls without it are refused on gRPC and HTTP; probes stay open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from google.protobuf import empty_pb2

from actorflow.testing import free_port_block
from sidecar.app import Sidecar
from sidecar.config import SidecarConfig
from sidecar.http import serve_http
from sidecar.taskhub_wire import TASKHUB_SERVICE_NAME

TOKEN = "s3cret-token"


@pytest.fixture
async def sidecar() -> AsyncIterator[SidecarConfig]:
    base = free_port_block(2)
    config = SidecarConfig(
        grpc_address=f"127.0.0.1:{base}",
        http_address=f"127.0.0.1:{base + 1}",
        placement=("127.0.0.1:1",),
        store_url="memory://",
        api_token=TOKEN,
    )
    app = Sidecar(config)
    await app.start()
    runner = await serve_http(app)
    yield config
    await runner.cleanup()
    await app.stop()


async def _hello(address: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.unary_unary(
            f"/{TASKHUB_SERVICE_NAME}/Hello",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        try:
            await call(empty_pb2.Empty(), metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK


async def test_grpc_app_calls_need_the_token(sidecar: SidecarConfig) -> None:
    assert await _hello(sidecar.grpc_address, ()) == grpc.StatusCode.UNAUTHENTICATED
    wrong = (("dapr-api-token", "nope"),)
    assert await _hello(sidecar.grpc_address, wrong) == grpc.StatusCode.UNAUTHENTICATED
    right = (("dapr-api-token", TOKEN),)
    assert await _hello(sidecar.grpc_address, right) == grpc.StatusCode.OK


async def test_http_needs_the_token_but_probes_do_not(sidecar: SidecarConfig) -> None:
    base = f"http://{sidecar.http_address}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1.0/actors/counter/a/method/get") as resp:
            assert resp.status == 401
            assert (await resp.json())["errorCode"] == "ERR_UNAUTHENTICATED"
        headers = {"dapr-api-token": TOKEN}
        # With the token the request gets past the check (GET is not a route here: 405).
        async with http.get(f"{base}/v1.0/actors/counter/a/method/get", headers=headers) as resp:
            assert resp.status == 405
        async with http.get(f"{base}/v1.0/actors/counter/a/method/get") as resp:
            assert resp.status == 401
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
