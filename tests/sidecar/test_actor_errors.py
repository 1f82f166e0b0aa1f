"""How an actor's error reaches a client: the status code the gRPC API answers
(`actor_status`) and the HTTP status and errorCode the workflow routes answer for it. A
state store that is out of reach or cannot write is UNAVAILABLE / 503, not INTERNAL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from sidecar.actors.base import ActorCallError
from sidecar.engine.taskhub import actor_status
from sidecar.http_workflows import HttpError, WorkflowApi

OUTAGE = "etcd txn: no endpoint answered within 10.0s (127.0.0.1:1: cannot connect)"


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        ("NOT_FOUND: no such instance exists: 'x'", grpc.StatusCode.NOT_FOUND,
         "no such instance exists: 'x'"),
        ("ActorCallError: ALREADY_EXISTS: running", grpc.StatusCode.ALREADY_EXISTS, "running"),
        (f"StoreUnavailableError: {OUTAGE}", grpc.StatusCode.UNAVAILABLE,
         f"the state store is unavailable: {OUTAGE}"),
        ("ActorCallError: TransactionOutcomeUnknownError: lost", grpc.StatusCode.UNAVAILABLE,
         "the state store is unavailable: lost"),
        (f"ActorCallError: activation failed: StoreUnavailableError('{OUTAGE}')",
         grpc.StatusCode.UNAVAILABLE,
         f"the state store is unavailable: activation failed: StoreUnavailableError('{OUTAGE}')"),
        ("activation failed: KeyError('x')", grpc.StatusCode.INTERNAL,
         "activation failed: KeyError('x')"),
        ("KeyError: 'x'", grpc.StatusCode.INTERNAL, "KeyError: 'x'"),
        ("OK: fine", grpc.StatusCode.INTERNAL, "OK: fine"),
    ],
)  # fmt: skip
def test_actor_status(text: str, status: grpc.StatusCode, message: str) -> None:
    assert actor_status(ActorCallError(text)) == (status, message)


class _Failing:
    def __init__(self, text: str) -> None:
        self.text = text

    async def call(self, *args: Any, **kwargs: Any) -> bytes:
        raise ActorCallError(self.text)


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        (f"StoreUnavailableError: sqlite transaction on s.db: {OUTAGE}", 503,
         "ERR_STORE_UNAVAILABLE"),
        ("NOT_FOUND: no such instance exists: 'x'", 404, "ERR_INSTANCE_NOT_FOUND"),
        ("FAILED_PRECONDITION: instance 'x' has finished", 409, "ERR_FAILED_PRECONDITION"),
        ("RESOURCE_EXHAUSTED: too big", 413, "ERR_PAYLOAD_TOO_LARGE"),
        ("ValueError: odd", 500, "ERR_INTERNAL"),
    ],
)  # fmt: skip
async def test_the_http_routes_read_it_as_the_grpc_api_does(
    text: str, status: int, code: str
) -> None:
    sidecar: Any = SimpleNamespace(
        router=_Failing(text), config=SimpleNamespace(namespace="default", app_id="app")
    )
    with pytest.raises(HttpError) as raised:
        await WorkflowApi(sidecar).get("x")
    assert (raised.value.status, raised.value.code) == (status, code)
