"""Workflow routes of the sidecar's HTTP API: the proposal's and Dapr's (DESIGN.md 3.2).

Seed form (`{workflowType}` is informational on everything but start; `dapr` is
reserved for Dapr's form):

    POST   /v1.0/workflows/{workflowType}/{instanceId}/start       body: the input (JSON)
    POST   /v1.0/workflows/{workflowType}/{instanceId}/terminate   body: saved as the output
    POST   /v1.0/workflows/{workflowType}/{instanceId}/raiseEvent  body: {"name": N, "data": D}
    GET    /v1.0/workflows/{workflowType}/{instanceId}
    DELETE /v1.0/workflows/{workflowType}/{instanceId}              purge (finished only)

Dapr form, also under `/v1.0-beta1/`:

    POST /v1.0/workflows/dapr/{workflowName}/start[?instanceID=ID]  -> {"instanceID": ID}
    GET  /v1.0/workflows/dapr/{instanceID}
    POST /v1.0/workflows/dapr/{instanceID}/{terminate|pause|resume|purge}
    POST /v1.0/workflows/dapr/{instanceID}/raiseEvent/{eventName}   body: the event data

Ids and names are path segments, percent-decoded (`order%2042` is `order 42`): an
instance id follows the gRPC API's rule (`sidecar.engine.naming.instance_id_problem`),
so every instance an SDK started can be named here; a workflow's or an event's name is
1 to 256 printable characters (`naming.name_problem`, as on gRPC). Bodies are strict
JSON: `NaN` and `Infinity` are malformed. `Location` carries both percent-encoded.

Answers: start 202 with `Location` (the status URL); others 202 (purge 200); GET 200
with the instance's metadata. Errors are JSON `{"errorCode", "message"}`: 400 malformed
(bad JSON, bad ids), 404 unknown instance, 409 duplicate start or wrong state (purge of a
running instance, events to a finished one but a terminate of a terminated one or a raise,
suspend or resume its history holds already, a copy sent again, which are answered 202
and change nothing; the seed form's start of any stored instance,
finished or not, while Dapr's form reuses a finished instance's id, as the SDK does),
413 over the payload limit, 401 without the token (see sidecar/auth.py), 503 not ready.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

import msgpack
from aiohttp import web

from sidecar.actors.base import ActorCallError, ActorUnavailableError, UnknownActorTypeError
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.arrivals import arrival_ns
from sidecar.engine.naming import instance_id_problem, name_problem, workflow_type
from sidecar.engine.taskhub import actor_status
from sidecar.http_errors import error
from sidecar.workflow.events import (
    client_raised_event,
    execution_started_event,
    resumed_event,
    stamped,
    suspended_event,
    terminated_event,
    timestamp_ms,
)

if TYPE_CHECKING:
    from sidecar.app import Sidecar

_STATUS = {
    pb.ORCHESTRATION_STATUS_RUNNING: "RUNNING",
    pb.ORCHESTRATION_STATUS_COMPLETED: "COMPLETED",
    pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW: "CONTINUED_AS_NEW",
    pb.ORCHESTRATION_STATUS_FAILED: "FAILED",
    pb.ORCHESTRATION_STATUS_CANCELED: "CANCELED",
    pb.ORCHESTRATION_STATUS_TERMINATED: "TERMINATED",
    pb.ORCHESTRATION_STATUS_PENDING: "PENDING",
    pb.ORCHESTRATION_STATUS_SUSPENDED: "SUSPENDED",
    pb.ORCHESTRATION_STATUS_STALLED: "STALLED",
}
_HTTP_FOR = {"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409,
             "INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 413,
             "UNAVAILABLE": 503}  # fmt: skip
# The errorCode of an actor's refusal, where it is not `ERR_{code}`: every route here
# names an instance, so the actor's NOT_FOUND is that instance missing (the same answer
# as a get or purge of it); a payload the state store cannot hold is the same 413 as
# a body over the HTTP limit; UNAVAILABLE comes only from the state store (see
# `actor_status`).
_ERR_FOR = {"NOT_FOUND": "ERR_INSTANCE_NOT_FOUND", "RESOURCE_EXHAUSTED": "ERR_PAYLOAD_TOO_LARGE",
            "UNAVAILABLE": "ERR_STORE_UNAVAILABLE"}  # fmt: skip


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_id(value: str) -> str:
    """An instance id from the path or the query (percent-decoded): the gRPC API's rule,
    so that every instance an SDK started can be named here."""
    problem = instance_id_problem(value)
    if problem is not None:
        raise HttpError(400, "ERR_MALFORMED_REQUEST", problem)
    return value


def _check_name(value: str, what: str = "workflow name") -> str:
    problem = name_problem(what, value)
    if problem is not None:
        raise HttpError(400, "ERR_MALFORMED_REQUEST", problem)
    return value


def _no_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser takes them unless told not to."""
    raise ValueError(f"{name} is not JSON")


def _strict_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def _check_utf8(request: web.Request) -> None:
    """The path and query, percent-decoded, must be UTF-8: aiohttp would keep an invalid
    escape as it came (`%C3(`) and read the query's with U+FFFD, so two different ids
    could name one instance."""
    try:
        unquote_to_bytes(request.raw_path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(
            400, "ERR_MALFORMED_REQUEST", f"the URL is not UTF-8 once percent-decoded: {exc}"
        ) from None


async def _json_text(request: web.Request) -> str | None:
    """The body as JSON text (None when empty); 400 when it is not JSON in UTF-8 (RFC
    8259; Python's parser would also take UTF-16 and UTF-32 bytes, which the app could
    not read back). A body over the limit raises aiohttp's 413, which
    `sidecar.http.json_errors` answers as JSON."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, "ERR_MALFORMED_REQUEST", f"body is not UTF-8: {exc}") from None
    try:
        _strict_loads(text)
    except ValueError as exc:
        raise HttpError(400, "ERR_MALFORMED_REQUEST", f"body is not JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser's stack
        raise HttpError(
            400, "ERR_MALFORMED_REQUEST", "body is JSON nested too deeply to parse"
        ) from None
    return text


class WorkflowApi:
    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    async def _call(self, instance_id: str, method: str, payload: bytes) -> bytes:
        router = self._sidecar.router
        if router is None:
            raise HttpError(503, "ERR_NOT_READY", "the sidecar is starting")
        cfg = self._sidecar.config
        try:
            result: bytes = await router.call(
                workflow_type(cfg.namespace, cfg.app_id), instance_id, method, payload
            )
            return result
        except ActorCallError as exc:
            status, message = actor_status(exc)  # as the gRPC API reads it
            code = status.name
            name = _ERR_FOR.get(code, f"ERR_{code}")
            raise HttpError(_HTTP_FOR.get(code, 500), name, message) from exc
        except (ActorUnavailableError, UnknownActorTypeError) as exc:
            raise HttpError(503, "ERR_NOT_READY", str(exc)) from exc

    async def _event(self, instance_id: str, event: pb.HistoryEvent) -> None:
        payload = msgpack.packb({"e": event.SerializeToString(), "durable": True})
        await self._call(instance_id, "event", payload)

    async def start(
        self, name: str, instance_id: str, input_json: str | None, *, new_only: bool
    ) -> None:
        """Start `instance_id`. With `new_only` (the seed form) any stored instance, even
        a finished one, is a conflict; without it (Dapr's form, like the SDK) a finished
        instance's id is reused and only a running one is."""
        event = execution_started_event(
            name=name, instance_id=instance_id, execution_id="", input=input_json, now_ms=_now_ms()
        )
        payload = {"e": event.SerializeToString(), "new": new_only}
        await self._call(instance_id, "start", msgpack.packb(payload))

    async def get(self, instance_id: str) -> pb.GetInstanceResponse:
        raw = await self._call(instance_id, "get", msgpack.packb(True))
        response = pb.GetInstanceResponse.FromString(raw)
        if not response.exists:
            raise HttpError(404, "ERR_INSTANCE_NOT_FOUND", f"no such instance: {instance_id!r}")
        return response

    async def control(self, instance_id: str, op: str, body: str | None) -> None:
        match op:
            case "terminate":
                event = terminated_event(body, _now_ms())
            case "pause" | "suspend":
                event = stamped(suspended_event(None, 0), arrival_ns())
            case "resume":
                event = stamped(resumed_event(None, 0), arrival_ns())
            case _:
                raise HttpError(404, "ERR_ROUTE_NOT_FOUND", f"unknown operation {op!r}")
        await self._event(instance_id, event)

    async def raise_event(self, instance_id: str, name: str, data: str | None) -> None:
        if not name:
            raise HttpError(400, "ERR_MALFORMED_REQUEST", "the event needs a name")
        await self._event(instance_id, client_raised_event(name, data, arrival_ns()))

    async def purge(self, instance_id: str) -> None:
        if await self._call(instance_id, "purge", b"") != b"1":
            raise HttpError(404, "ERR_INSTANCE_NOT_FOUND", f"no such instance: {instance_id!r}")


def _seed_view(r: pb.GetInstanceResponse) -> dict[str, Any]:
    s = r.workflowState
    view: dict[str, Any] = {
        "instanceId": s.instanceId,
        "name": s.name,
        "runtimeStatus": _STATUS.get(s.workflowStatus, "UNKNOWN"),
        "createdAt": _iso(timestamp_ms(s.createdTimestamp)),
        "lastUpdatedAt": _iso(timestamp_ms(s.lastUpdatedTimestamp)),
    }
    if s.HasField("scheduledStartTimestamp"):
        view["scheduledStartAt"] = _iso(timestamp_ms(s.scheduledStartTimestamp))
    if s.HasField("completedTimestamp"):
        view["completedAt"] = _iso(timestamp_ms(s.completedTimestamp))
    for field, key in (("customStatus", "customStatus"), ("input", "input"), ("output", "output")):
        if s.HasField(field):
            view[key] = _maybe_json(getattr(s, field).value)
    if s.HasField("failureDetails"):
        f = s.failureDetails
        view["failure"] = {"errorType": f.errorType, "errorMessage": f.errorMessage}
    return view


def _dapr_view(r: pb.GetInstanceResponse) -> dict[str, Any]:
    seed = _seed_view(r)
    props: dict[str, str] = {}
    s = r.workflowState
    for field, key in (("input", "dapr.workflow.input"), ("output", "dapr.workflow.output"),
                       ("customStatus", "dapr.workflow.custom_status")):  # fmt: skip
        if s.HasField(field):
            props[key] = getattr(s, field).value
    if s.HasField("failureDetails"):
        props["dapr.workflow.failure.error_type"] = s.failureDetails.errorType
        props["dapr.workflow.failure.error_message"] = s.failureDetails.errorMessage
    return {
        "instanceID": seed["instanceId"],
        "workflowName": seed["name"],
        "createdAt": seed["createdAt"],
        "lastUpdatedAt": seed["lastUpdatedAt"],
        "runtimeStatus": seed["runtimeStatus"],
        "properties": props,
    }


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _maybe_json(text: str) -> Any:
    try:
        return _strict_loads(text)
    except (ValueError, RecursionError):  # not JSON (an SDK may store any text), or too deep
        return text


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body), content_type="application/json",
                        headers=headers)  # fmt: skip


def _event_body(body: str | None) -> tuple[str, str | None]:
    """The seed form's raiseEvent body `{"name": N, "data": D}` -> (N, D as JSON text)."""
    event = json.loads(body) if body else None
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        raise HttpError(400, "ERR_MALFORMED_REQUEST",
                        'raiseEvent body must be {"name": ..., "data": ...}')  # fmt: skip
    data = event.get("data")
    return _check_name(event["name"], "event name"), None if data is None else json.dumps(data)


class _Handlers:
    def __init__(self, sidecar: Sidecar) -> None:
        self.api = WorkflowApi(sidecar)

    async def start(self, request: web.Request) -> web.StreamResponse:
        a, b = request.match_info["a"], request.match_info["b"]
        body = await _json_text(request)
        if a == "dapr":  # Dapr: b is the workflow name, the id comes in the query
            name = _check_name(b)
            iid = _check_id(request.query.get("instanceID") or uuid.uuid4().hex)
        else:
            name, iid = _check_name(a), _check_id(b)
        await self.api.start(name, iid, body, new_only=a != "dapr")
        base = request.raw_path.split("?", 1)[0].rsplit("/", 3)[0]
        location = f"{base}/{quote(a, safe='')}/{quote(iid, safe='')}"
        return _json(202, {"instanceID": iid}, {"Location": location})

    async def get(self, request: web.Request) -> web.StreamResponse:
        a, b = request.match_info["a"], request.match_info["b"]
        response = await self.api.get(_check_id(b))
        return _json(200, _dapr_view(response) if a == "dapr" else _seed_view(response))

    async def operate(self, request: web.Request) -> web.StreamResponse:
        iid = _check_id(request.match_info["b"])
        op = request.match_info["op"]
        body = await _json_text(request)
        if op == "purge":
            await self.api.purge(iid)
            return web.Response(status=200)
        if op == "raiseEvent":
            await self.api.raise_event(iid, *_event_body(body))
        else:
            await self.api.control(iid, op, body)
        return web.Response(status=202)

    async def raise_named(self, request: web.Request) -> web.StreamResponse:
        iid = _check_id(request.match_info["b"])
        name = _check_name(request.match_info["event"], "event name")
        await self.api.raise_event(iid, name, await _json_text(request))
        return web.Response(status=202)

    async def purge(self, request: web.Request) -> web.StreamResponse:
        await self.api.purge(_check_id(request.match_info["b"]))
        return web.Response(status=200)


def _guard(fn: Any) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            _check_utf8(request)
            result: web.StreamResponse = await fn(request)
            return result
        except HttpError as exc:
            return error(exc.status, exc.code, exc.message)

    return handler


def routes(sidecar: Sidecar) -> list[web.RouteDef]:
    h = _Handlers(sidecar)
    ops = "{op:terminate|pause|resume|purge|raiseEvent}"
    table: list[web.RouteDef] = []
    for base in ("/v1.0/workflows", "/v1.0-beta1/workflows"):
        table += [
            web.post(base + "/{a}/{b}/start", _guard(h.start)),
            web.post(base + "/{a}/{b}/raiseEvent/{event}", _guard(h.raise_named)),
            web.post(base + "/{a}/{b}/" + ops, _guard(h.operate)),
            web.get(base + "/{a}/{b}", _guard(h.get)),
            web.delete(base + "/{a}/{b}", _guard(h.purge)),
        ]
    return table
