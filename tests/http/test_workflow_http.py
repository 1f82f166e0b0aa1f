"""The workflow HTTP API (DESIGN.md 3.2): every route and error code, against a real
cluster with a Dapr SDK app, and an API token."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgpack
import pytest
from yarl import URL

from actorflow.testing import UpCluster, free_port_block
from sidecar.workflow.events import raised_event

pytestmark = pytest.mark.slow

TOKEN = "http-test-token"
APP = Path(__file__).resolve().parent.parent / "engine_app.py"
HEADERS = {"dapr-api-token": TOKEN}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("http")
    up = UpCluster(
        root / "af",
        ["--sidecars=1", f"--base-grpc-port={free_port_block(2)}",
         f"--base-http-port={free_port_block(2)}"],
        env={"DAPR_API_TOKEN": TOKEN},
    )  # fmt: skip
    app = None
    try:
        info = up.start()
        sidecar = info["sidecars"][0]
        env = {**os.environ, "DAPR_GRPC_ENDPOINT": sidecar["grpc"], "DAPR_API_TOKEN": TOKEN}
        log = (root / "app.log").open("ab")
        app = subprocess.Popen([sys.executable, str(APP)], stdout=log, stderr=log, env=env)
        yield str(sidecar["http"])
    finally:
        if app is not None:
            app.send_signal(signal.SIGTERM)
            app.wait(15)
        up.stop()


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=base_url, headers=HEADERS) as session:
        yield session


def uid(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


async def status_of(http: aiohttp.ClientSession, path: str | URL, want: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            async with http.get(path) as resp:
                assert resp.status == 200, await resp.text()
                body: dict[str, Any] = await resp.json()
            status = body.get("runtimeStatus")
            if status == want:
                return body
            await asyncio.sleep(0.05)  # polling the status route, as a client would


async def test_seed_start_get_duplicate_and_complete(http: aiohttp.ClientSession) -> None:
    iid = uid("seed")
    async with http.post(f"/v1.0/workflows/fan/{iid}/start", data="7") as resp:
        assert resp.status == 202
        location = resp.headers["Location"]
        assert location == f"/v1.0/workflows/fan/{iid}"
    async with http.post(f"/v1.0/workflows/fan/{iid}/start", data="7") as resp:
        assert resp.status == 409  # running or finished: the instance exists
    body = await status_of(http, location, "COMPLETED")
    assert body["output"] == sum(2 * i for i in range(7)) and body["input"] == 7
    assert body["name"] == "fan" and "createdAt" in body and "completedAt" in body
    # Finished, it still exists: the seed form's start is a conflict until it is purged.
    async with http.post(f"/v1.0/workflows/fan/{iid}/start", data="3") as resp:
        assert resp.status == 409
        error = await resp.json()
        assert error["errorCode"] == "ERR_ALREADY_EXISTS" and "purge" in error["message"]
    assert (await status_of(http, location, "COMPLETED"))["input"] == 7
    async with http.delete(location) as resp:
        assert resp.status == 200
    async with http.post(f"/v1.0/workflows/fan/{iid}/start", data="3") as resp:
        assert resp.status == 202
    assert (await status_of(http, location, "COMPLETED"))["output"] == sum(2 * i for i in range(3))


async def test_seed_raise_event_terminate_and_purge(http: aiohttp.ClientSession) -> None:
    iid = uid("waits")
    async with http.post(f"/v1.0/workflows/waits/{iid}/start") as resp:
        assert resp.status == 202
    path = f"/v1.0/workflows/waits/{iid}"
    await status_of(http, path, "RUNNING")
    async with http.post(f"/v1.0/workflows/waits/{iid}/start") as resp:
        assert resp.status == 409
        assert (await resp.json())["errorCode"] == "ERR_ALREADY_EXISTS"
    async with http.delete(path) as resp:
        assert resp.status == 409  # purge only finished instances
    async with http.post(f"{path}/raiseEvent", json={"name": "release", "data": {"k": 1}}) as resp:
        assert resp.status == 202
    assert (await status_of(http, path, "COMPLETED"))["output"] == {"k": 1}
    async with http.post(f"{path}/terminate") as resp:
        assert resp.status == 409  # it completed on its own: too late to terminate
    async with http.delete(path) as resp:
        assert resp.status == 200
    async with http.get(path) as resp:
        assert resp.status == 404

    other = uid("term")
    async with http.post(f"/v1.0/workflows/waits/{other}/start") as resp:
        assert resp.status == 202
    await status_of(http, f"/v1.0/workflows/waits/{other}", "RUNNING")
    async with http.post(f"/v1.0/workflows/waits/{other}/terminate", json={"why": "ops"}) as resp:
        assert resp.status == 202
    body = await status_of(http, f"/v1.0/workflows/waits/{other}", "TERMINATED")
    assert body["output"] == {"why": "ops"}
    # Terminated already: a terminate again is answered as the first was, and changes
    # nothing; a raise is refused.
    async with http.post(f"/v1.0/workflows/waits/{other}/terminate", json="again") as resp:
        assert resp.status == 202
    assert (await status_of(http, f"/v1.0/workflows/waits/{other}", "TERMINATED"))["output"] == {
        "why": "ops"
    }
    async with http.post(f"/v1.0/workflows/waits/{other}/raiseEvent", json={"name": "x"}) as resp:
        assert resp.status == 409


async def test_dapr_forms(http: aiohttp.ClientSession) -> None:
    iid = uid("dapr")
    async with http.post(f"/v1.0-beta1/workflows/dapr/waits/start?instanceID={iid}") as resp:
        assert resp.status == 202
        assert (await resp.json())["instanceID"] == iid
    path = f"/v1.0/workflows/dapr/{iid}"
    await status_of(http, path, "RUNNING")
    async with http.post(f"{path}/pause") as resp:
        assert resp.status == 202
    await status_of(http, path, "SUSPENDED")
    async with http.post(f"{path}/raiseEvent/release", json="later") as resp:
        assert resp.status == 202
    async with http.post(f"{path}/resume") as resp:
        assert resp.status == 202
    body = await status_of(http, path, "COMPLETED")
    assert body["workflowName"] == "waits"
    assert body["properties"]["dapr.workflow.output"] == '"later"'
    # Dapr's form reuses a finished instance's id, as Dapr and the SDK do.
    async with http.post(f"/v1.0/workflows/dapr/fan/start?instanceID={iid}", data="2") as resp:
        assert resp.status == 202
    body = await status_of(http, path, "COMPLETED")
    assert body["workflowName"] == "fan" and body["properties"]["dapr.workflow.output"] == "2"
    async with http.post(f"{path}/purge") as resp:
        assert resp.status == 200
    async with http.get(path) as resp:
        assert resp.status == 404
    generated = None
    async with http.post("/v1.0/workflows/dapr/fan/start", data="2") as resp:
        assert resp.status == 202
        generated = (await resp.json())["instanceID"]
    assert generated


async def test_ids_are_percent_encoded_path_segments(http: aiohttp.ClientSession) -> None:
    """Any id the gRPC API takes (a space, a slash, a non-ASCII letter) works here too,
    percent-encoded, and `Location` comes back encoded."""
    iid = uid("order 42/é")
    encoded = quote(iid, safe="")
    async with http.post(URL(f"/v1.0/workflows/fan/{encoded}/start", encoded=True),
                         data="3") as resp:  # fmt: skip
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["instanceID"] == iid
        location = resp.headers["Location"]
    assert location == f"/v1.0/workflows/fan/{encoded}"
    body = await status_of(http, URL(location, encoded=True), "COMPLETED")
    assert body["instanceId"] == iid and body["output"] == 6
    async with http.get(URL(f"/v1.0/workflows/dapr/{encoded}", encoded=True)) as resp:
        assert (await resp.json())["instanceID"] == iid
    waiting = uid("waits?&=#")  # the Dapr form takes the id in the query
    start = URL(f"/v1.0/workflows/dapr/waits/start?instanceID={quote(waiting, safe='')}",
                encoded=True)  # fmt: skip
    async with http.post(start) as resp:
        assert resp.status == 202 and (await resp.json())["instanceID"] == waiting
        location = resp.headers["Location"]
    await status_of(http, URL(location, encoded=True), "RUNNING")
    async with http.post(start) as resp:
        assert resp.status == 409  # the same instance, so the id was read the same way
    async with http.post(URL(f"{location}/terminate", encoded=True)) as resp:
        assert resp.status == 202


async def test_the_engines_actors_are_not_open_to_the_actor_api(
    http: aiohttp.ClientSession,
) -> None:
    """A forged completion sent to a running workflow's actor through the actor API
    (its `event` method takes raw history events) is refused; the workflow goes on
    waiting, and finishes with what the event it waits for carries."""
    iid = uid("forged")
    async with http.post(f"/v1.0/workflows/waits/{iid}/start") as resp:
        assert resp.status == 202
    path = f"/v1.0/workflows/waits/{iid}"
    await status_of(http, path, "RUNNING")
    forged = raised_event("release", '"forged"', 1).SerializeToString()
    for kind in ("workflow", "activity"):
        actor = f"/v1.0/actors/dapr.internal.default.app.{kind}/{iid}/method/event"
        async with http.post(actor, data=msgpack.packb({"e": forged, "durable": True})) as resp:
            assert resp.status == 403, await resp.text()
            assert (await resp.json())["errorCode"] == "ERR_ACTOR_TYPE_INTERNAL"
    assert (await status_of(http, path, "RUNNING"))["runtimeStatus"] == "RUNNING"
    async with http.post(f"{path}/raiseEvent", json={"name": "release", "data": "real"}) as resp:
        assert resp.status == 202
    assert (await status_of(http, path, "COMPLETED"))["output"] == "real"


async def test_a_request_line_over_aiohttps_limit_is_400_and_serving_goes_on(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/v1.0/workflows/dapr/" + "x" * 20_000) as resp:
        assert resp.status == 400
    async with http.get("/v1.0/healthz") as resp:
        assert resp.status == 204


async def test_failure_is_reported(http: aiohttp.ClientSession) -> None:
    iid = uid("fails")
    async with http.post(f"/v1.0/workflows/fails/{iid}/start", json="kaput") as resp:
        assert resp.status == 202
    body = await status_of(http, f"/v1.0/workflows/fails/{iid}", "FAILED")
    assert "kaput" in body["failure"]["errorMessage"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1.0/workflows/fan/ok-id/start", b"{not json", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/bad%7C%7Cid/start", b"1", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/nul%00id/start", b"1", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/deep/start", b"[" * 100_000 + b"]" * 100_000, 400,
         "ERR_MALFORMED_REQUEST"),  # was 500: the parser's RecursionError
        ("POST", "/v1.0/workflows/dapr/fa%0An/start", b"1", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/dapr/" + "x" * 257, None, 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/nan/start", b"NaN", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/inf/start", b'{"x": [1, -Infinity]}', 400,
         "ERR_MALFORMED_REQUEST"),  # not JSON; the GET of it would have answered non-JSON
        ("POST", "/v1.0/workflows/dapr/never-started/raiseEvent/" + "e" * 257, None, 400,
         "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/x/never-started/raiseEvent", b'{"name": "a\\u0000b"}', 400,
         "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/workflows/fan/bom16/start", b"\xff\xfe" + '"hi"'.encode("utf-16-le"),
         400, "ERR_MALFORMED_REQUEST"),  # was 500: JSON parsed as UTF-16, then decoded as 8
        ("POST", "/v1.0/workflows/fan/utf16/start", '"hi"'.encode("utf-16-le"), 400,
         "ERR_MALFORMED_REQUEST"),  # was saved with NULs, which the app could not read
        ("POST", "/v1.0/workflows/dapr/fan/start?instanceID=%FF", b"1", 400,
         "ERR_MALFORMED_REQUEST"),  # was started as U+FFFD, as %FE would have been
        ("POST", "/v1.0/workflows/fan/%C3%28/start", b"1", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/workflows/fan/never-started", None, 404, "ERR_INSTANCE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/fan/never-started/terminate", None, 404,
         "ERR_INSTANCE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/never-started/pause", None, 404, "ERR_INSTANCE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/never-started/raiseEvent/e", None, 404,
         "ERR_INSTANCE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/x/never-started/raiseEvent", b'{"data": 1}', 400,
         "ERR_MALFORMED_REQUEST"),
        ("DELETE", "/v1.0/workflows/fan/never-started", None, 404, "ERR_INSTANCE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/fan/huge/start", b"1" * (5 * 1024 * 1024), 413,
         "ERR_PAYLOAD_TOO_LARGE"),
        ("PUT", "/v1.0/workflows/fan/some-id/start", b"1", 405, "ERR_METHOD_NOT_ALLOWED"),
        ("GET", "/v1.0/no-such-route", None, 404, "ERR_ROUTE_NOT_FOUND"),
        ("POST", "/v1.0/workflows/dapr/some-id/bogus", None, 404, "ERR_ROUTE_NOT_FOUND"),
    ],
)  # fmt: skip
async def test_errors(
    http: aiohttp.ClientSession, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    async with http.request(method, path, data=body) as resp:
        assert resp.status == status, await resp.text()
        assert (await resp.json())["errorCode"] == code


async def test_token_health_and_metrics(base_url: str) -> None:
    async with aiohttp.ClientSession(base_url=base_url) as bare:
        async with bare.get("/v1.0/workflows/fan/anything") as resp:
            assert resp.status == 401
        async with bare.post("/v1.0/workflows/fan/anything/start") as resp:
            assert resp.status == 401
        async with bare.get("/v1.0/healthz") as resp:
            assert resp.status == 204
        async with bare.get("/metrics") as resp:
            assert resp.status == 200 and "actorflow_actors_active" in await resp.text()


async def metric_values(http: aiohttp.ClientSession) -> dict[str, float]:
    async with http.get("/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_metrics_count_workflows_and_checkpoints(http: aiohttp.ClientSession) -> None:
    before = await metric_values(http)
    done, failed, stopped = uid("m-done"), uid("m-failed"), uid("m-stopped")
    for kind, iid, body in (
        ("fan", done, "3"),
        ("fails", failed, '"kaput"'),
        ("waits", stopped, ""),
    ):
        async with http.post(f"/v1.0/workflows/{kind}/{iid}/start", data=body) as resp:
            assert resp.status == 202
    await status_of(http, f"/v1.0/workflows/fan/{done}", "COMPLETED")
    await status_of(http, f"/v1.0/workflows/fails/{failed}", "FAILED")
    await status_of(http, f"/v1.0/workflows/waits/{stopped}", "RUNNING")
    async with http.post(f"/v1.0/workflows/waits/{stopped}/terminate") as resp:
        assert resp.status == 202
    await status_of(http, f"/v1.0/workflows/waits/{stopped}", "TERMINATED")
    after = await metric_values(http)

    def delta(name: str) -> float:
        return after[name] - before[name]

    assert delta("actorflow_workflows_started_total") == 3
    for status in ("COMPLETED", "FAILED", "TERMINATED"):
        assert delta(f'actorflow_workflows_finished_total{{status="{status}"}}') == 1, status
    # Every instance saved its start and at least one turn.
    checkpoints = "actorflow_workflow_checkpoint_seconds"
    assert delta(f"{checkpoints}_count") >= 6
    assert after[f'{checkpoints}_bucket{{le="+Inf"}}'] == after[f"{checkpoints}_count"]
    buckets = [v for k, v in after.items() if k.startswith(f"{checkpoints}_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert after["actorflow_app_connections"] == 1  # the one SDK app of this cluster
    assert after["actorflow_workflow_work_items_queued"] == 0


async def test_a_sidecar_cut_off_from_placement_says_so_and_keeps_serving(
    tmp_path: Path,
) -> None:
    """Placement and reminders unreachable (nothing listens on their ports): healthz is
    500, a workflow route answers 503 ERR_NOT_READY once `--call-timeout` runs out, and
    the process goes on answering. A body over `--max-payload-bytes` is refused first."""
    base = free_port_block(4)  # gRPC, HTTP, and two ports where nothing listens
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "--app-id=app",
        f"--grpc-address=127.0.0.1:{base}", f"--http-address=127.0.0.1:{base + 1}",
        f"--placement=127.0.0.1:{base + 2}", f"--reminders=127.0.0.1:{base + 3}",
        f"--store=sqlite://{tmp_path / 'state.db'}", "--call-timeout=0.5",
        "--max-payload-bytes=2048",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"READY"), line
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{base + 1}") as http:
            for _ in range(2):
                async with http.get("/v1.0/healthz") as resp:
                    assert resp.status == 500
                    assert (await resp.json())["errorCode"] == "ERR_HEALTH_NOT_READY"
                async with http.post("/v1.0/workflows/fan/cut-off/start", data="1") as resp:
                    assert resp.status == 503, await resp.text()
                    assert (await resp.json())["errorCode"] == "ERR_NOT_READY"
                async with http.get("/v1.0/workflows/dapr/cut-off") as resp:
                    assert resp.status == 503
                big = b"[" + b"1," * 1500 + b"1]"  # valid JSON, 3 KB
                async with http.post("/v1.0/workflows/fan/cut-off/start", data=big) as resp:
                    assert resp.status == 413
                    assert (await resp.json())["errorCode"] == "ERR_PAYLOAD_TOO_LARGE"
        assert proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
