"""The sidecar's HTTP server (aiohttp): health, metrics and actor invocation.

- `GET /v1.0/healthz`: 204 once connected to placement and a reminders leader, 500 with
  a JSON error otherwise.
- `GET /metrics`: Prometheus text format.
- `POST|PUT /v1.0/actors/{actorType}/{actorId}/method/{method}`: invoke an actor method
  (Dapr's actor API): the body is the payload, the answer the method's result (200);
  404 for an actor type no sidecar hosts, 500 when the actor raised, 503 when no owner
  answered in time, 413 over the payload limit, 403 for the workflow engine's own
  actors (`dapr.internal.*`): their methods take raw history events, and a
  forged one would be taken as the truth.
- `/v1.0/workflows/...` and `/v1.0-beta1/workflows/...`: see sidecar/http_workflows.py.

Errors are JSON `{"errorCode": ..., "message": ...}`, built by `sidecar.http_errors.error`
(here, in the workflow routes and in the token check alike). This module also answers
for aiohttp itself: a path no
route matches is 404 `ERR_ROUTE_NOT_FOUND`, a method the route does not take 405
`ERR_METHOD_NOT_ALLOWED` (with `Allow`), and an unexpected failure 500 `ERR_INTERNAL`
(logged with its traceback). A request aiohttp cannot parse (a request line or a
header over 8,190 bytes, more than 128 headers, broken framing) is 400
`ERR_MALFORMED_REQUEST` (`sidecar.http_errors.JsonErrorRunner`), logged as one INFO line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from raftkit.listen import BindError
from sidecar.actors.base import ActorCallError, ActorUnavailableError, UnknownActorTypeError
from sidecar.auth import token_middleware
from sidecar.engine.naming import INTERNAL_ACTOR_PREFIX
from sidecar.http_errors import JsonErrorRunner, error
from sidecar.http_workflows import routes as workflow_routes

if TYPE_CHECKING:
    from sidecar.app import Sidecar

SIDECAR: web.AppKey[Sidecar] = web.AppKey("sidecar")

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    if await request.app[SIDECAR].healthy():
        return web.Response(status=204)
    return error(500, "ERR_HEALTH_NOT_READY", "not connected to placement and reminders")


async def metrics(request: web.Request) -> web.Response:
    sidecar = request.app[SIDECAR]
    host, router = sidecar.host, sidecar.router
    table = sidecar.placement.table if sidecar.placement else None
    waiting = sidecar.services.waiting if sidecar.services else None
    values = {
        "actorflow_actor_activations_total": ("counter", host.activations if host else 0),
        "actorflow_actor_deactivations_total": ("counter", host.deactivations if host else 0),
        "actorflow_actors_active": ("gauge", len(host.active) if host else 0),
        "actorflow_placement_table_version": ("gauge", table.version if table else 0),
        "actorflow_actor_call_retries_total": ("counter", router.retries if router else 0),
        "actorflow_workflow_work_items_total": ("counter", sidecar.apps.dispatched_workflows),
        "actorflow_activity_work_items_total": ("counter", sidecar.apps.dispatched_activities),
        # Work items over --max-payload-bytes: their turn or activity failed, unsent.
        "actorflow_work_items_refused_total": ("counter", sidecar.apps.refused_items),
        # Clients of any sidecar waiting for an instance this sidecar's actors hold.
        "actorflow_workflow_waiting_callers": ("gauge", waiting.callers if waiting else 0),
        # SDK apps with a work-item stream open here, and turns waiting for one of them.
        "actorflow_app_connections": ("gauge", sidecar.apps.connections),
        "actorflow_workflow_work_items_queued": ("gauge", sidecar.apps.queued_workflows),
        "actorflow_activity_work_items_queued": ("gauge", sidecar.apps.queued_activities),
    }
    lines = []
    for name, (kind, value) in values.items():
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    if sidecar.services is not None:
        lines += sidecar.services.metrics.lines()
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def invoke_actor(request: web.Request) -> web.Response:
    router = request.app[SIDECAR].router
    if router is None:
        return error(503, "ERR_NOT_READY", "the sidecar is starting")
    info = request.match_info
    if info["type"].startswith(INTERNAL_ACTOR_PREFIX):
        return error(
            403,
            "ERR_ACTOR_TYPE_INTERNAL",
            f"actor type {info['type'][:120]!r} is the workflow engine's own: "
            "use the workflow API (/v1.0/workflows/...)",
        )
    body = await request.read()  # over the limit: `json_errors` answers 413
    try:
        result = await router.call(info["type"], info["id"], info["method"], body)
    except UnknownActorTypeError as exc:
        return error(404, "ERR_ACTOR_TYPE_UNKNOWN", str(exc))
    except ActorCallError as exc:
        return error(500, "ERR_ACTOR_INVOKE_METHOD", str(exc))
    except ActorUnavailableError as exc:
        return error(503, "ERR_ACTOR_UNAVAILABLE", str(exc))
    return web.Response(body=result, content_type="application/octet-stream")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own answers (no such route, method not allowed, body too large) and
    unexpected failures in the JSON error shape of every other answer."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error(
            405, "ERR_METHOD_NOT_ALLOWED", f"{request.method} {request.path}: allowed {allowed}"
        )
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPNotFound:
        return error(404, "ERR_ROUTE_NOT_FOUND", f"no route for {request.method} {request.path}")
    except web.HTTPRequestEntityTooLarge:
        return error(413, "ERR_PAYLOAD_TOO_LARGE", "payload over the configured limit")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect or a success raised on purpose: aiohttp answers it
        return error(exc.status, f"ERR_HTTP_{exc.status}", exc.reason)
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return error(500, "ERR_INTERNAL", "internal error; the sidecar logged it")


def build_app(sidecar: Sidecar) -> web.Application:
    token = sidecar.config.api_token
    middlewares = [json_errors, *([token_middleware(token)] if token else [])]
    app = web.Application(client_max_size=sidecar.config.max_payload_bytes, middlewares=middlewares)
    app[SIDECAR] = sidecar
    app.router.add_get("/v1.0/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for method in ("POST", "PUT"):
        app.router.add_route(method, "/v1.0/actors/{type}/{id}/method/{method}", invoke_actor)
    app.router.add_routes(workflow_routes(sidecar))
    return app


class ClientFaultFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a line over 8,190 bytes, broken framing)
    as an ERROR with a traceback, before any route or middleware sees it (the client
    gets a 400): the client's fault, and a way to fill the log. Kept as one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {exc.code} {exc.message}".replace("\n", " ")
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def serve_http(sidecar: Sidecar) -> web.AppRunner:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientFaultFilter) for f in server_log.filters):
        server_log.addFilter(ClientFaultFilter())
    runner = JsonErrorRunner(build_app(sidecar), access_log=None)
    await runner.setup()
    host, _, port = sidecar.config.http_address.rpartition(":")
    site = web.TCPSite(runner, host, int(port))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise BindError(
            f"cannot listen on {sidecar.config.http_address} (HTTP API): {exc.strerror}"
        ) from None
    return runner
