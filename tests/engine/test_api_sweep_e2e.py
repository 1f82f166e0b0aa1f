"""DESIGN.md 4.5 swept: seeded random requests to every unary RPC of the app-facing gRPC
API and to every workflow route of the HTTP API, on a live cluster with its SDK app.
No answer may be INTERNAL or UNKNOWN (gRPC) or a 5xx other than 503 (HTTP), every HTTP
error is the JSON shape, and the sidecar serves a normal workflow afterwards.

The gRPC sweep found a scheduled start in year 36812 that was stored and then made every
GetInstance of its instance INTERNAL (a Timestamp no conversion takes)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import aiohttp
import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow.fuzzing import fill
from sidecar.taskhub_wire import taskhub_methods, taskhub_stub

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1}
PER_RPC = 40
HTTP_REQUESTS = 600


def test_random_grpc_requests_are_answered_with_a_clear_status(cluster: Any) -> None:
    rnd = random.Random(20261127)
    codes: Counter[tuple[str, str]] = Counter()
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        calls = taskhub_stub(channel)
        for name, method in taskhub_methods().items():
            if method.client_streaming or method.server_streaming:
                continue  # GetWorkItems: an app's own stream
            call = calls[name]
            # A wait for an instance that does not start or finish is held until the
            # caller's deadline (it may be started later): a short one here.
            timeout_s = 0.5 if name.startswith("WaitFor") else 10
            for _ in range(PER_RPC):
                request = fill(method.request_type(), rnd)
                try:
                    call(request, timeout=timeout_s)
                    codes[name, "OK"] += 1
                except grpc.RpcError as exc:
                    code = exc.code()
                    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                        name, code, exc.details(), str(request)[:500],
                    )  # fmt: skip
                    codes[name, code.name] += 1
    assert sum(n for (_, code), n in codes.items() if code == "OK") > 0
    assert sum(n for (_, code), n in codes.items() if code == "INVALID_ARGUMENT") > 0
    _still_serves(cluster)


_ROUTES = [
    "/v1.0/workflows/{}/{}/start", "/v1.0/workflows/{}/{}/terminate",
    "/v1.0/workflows/{}/{}/raiseEvent", "/v1.0/workflows/{}/{}",
    "/v1.0/workflows/dapr/{}/start", "/v1.0/workflows/dapr/{}", "/v1.0/workflows/dapr/{}/{}",
    "/v1.0/workflows/dapr/{}/raiseEvent/{}", "/v1.0-beta1/workflows/dapr/{}/start",
    "/v1.0/actors/{}/{}/method/{}",
]  # fmt: skip
_SEGMENTS = ["dapr", "fan", "waits", "a%2Fb", "%00", "%FF", "start", "purge", "pause", "resume",
             "a" * 300, "dapr.internal.default.app.workflow", "counter", "get"]  # fmt: skip
_BODIES = [None, b"", b"1", b"{}", b"[]", b"null", b'{"name": "e", "data": 1}', b"\xff\xfe",
           b"[" * 5000, b'"', b'{"name": null}']  # fmt: skip


async def _http_sweep(base: str, rnd: random.Random) -> Counter[int]:
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(HTTP_REQUESTS):
            route = rnd.choice(_ROUTES)
            names = _SEGMENTS + [f"w{rnd.randint(0, 9)}"] * 10
            path = route.format(*(rnd.choice(names) for _ in range(route.count("{}"))))
            if rnd.random() < 0.2:
                path += "?instanceID=" + rnd.choice(names)
            method = rnd.choice(["GET", "POST", "POST", "DELETE", "PUT", "PATCH"])
            body = rnd.choice(_BODIES)
            async with session.request(method, base + path, data=body) as resp:
                text = await resp.text(errors="replace")
                statuses[resp.status] += 1
                what = (method, path[:120], body[:40] if body else body, resp.status, text[:200])
                assert resp.status < 500 or resp.status == 503, what
                if resp.status >= 400:
                    assert set(json.loads(text)) == {"errorCode", "message"}, what
    return statuses


def test_random_http_requests_are_answered_with_a_clear_error(cluster: Any) -> None:
    statuses = asyncio.run(_http_sweep(cluster.info["sidecars"][0]["http"], random.Random(7)))
    assert statuses[202] > 0 and statuses[400] > 0 and statuses[404] > 0
    _still_serves(cluster)


def _still_serves(cluster: Any) -> None:
    c = cluster.client(0)
    iid = c.schedule_new_workflow("fan", input=5, instance_id=f"after-sweep-{random.random()}")
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == 20
