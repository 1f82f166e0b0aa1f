"""Start-up refusals: a port or a data directory already taken, an app id placement
would refuse, `actorflow scale` with no cluster; each with a clear message.

gRPC binds with SO_REUSEPORT by default, so a second server on a port in use used to
start and share it silently with the first (the kernel spreading connections over both:
clients of one cluster reaching the other's sidecar). Every server now binds the port
exclusively; a process that cannot listen says which port and exits 1; `actorflow up`
reports a child that failed to start without a traceback, and holds its data directory
so that a second `up` on it stops before starting anything."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from actorflow.testing import free_port_block
from raftkit.listen import EXCLUSIVE_PORT, BindError, bind_grpc
from sidecar.cli import main as sidecar_main

TIMEOUT_S = 60


@pytest.fixture
async def shared_port() -> AsyncIterator[int]:
    """A port held by a gRPC server with gRPC's default options (SO_REUSEPORT on), as
    any other gRPC process would hold it."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


@pytest.fixture
def plain_port() -> Iterator[int]:
    """A port held by a plain listening socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_bind_grpc_refuses_a_port_in_use(shared_port: int) -> None:
    taken = grpc.aio.server(options=[EXCLUSIVE_PORT])
    with pytest.raises(BindError, match=f"127.0.0.1:{shared_port} \\(test API\\)"):
        bind_grpc(taken, f"127.0.0.1:{shared_port}", "test API")
    # Two exclusive servers: the second is refused too.
    first = grpc.aio.server(options=[EXCLUSIVE_PORT])
    port = bind_grpc(first, "127.0.0.1:0", "test API")
    await first.start()
    try:
        with pytest.raises(BindError):
            bind_grpc(grpc.aio.server(options=[EXCLUSIVE_PORT]), f"127.0.0.1:{port}", "test API")
    finally:
        await first.stop(None)


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return done.returncode, done.stderr


def _sidecar(grpc_port: int, http_port: int, tmp_path: Path) -> list[str]:
    unused = free_port_block(2)  # placement and reminders: nothing listens there
    return [
        "sidecar", "--app-id=app", f"--grpc-address=127.0.0.1:{grpc_port}",
        f"--http-address=127.0.0.1:{http_port}", f"--placement=127.0.0.1:{unused}",
        f"--reminders=127.0.0.1:{unused + 1}", f"--store=sqlite://{tmp_path / 'state.db'}",
    ]  # fmt: skip


async def test_a_sidecar_on_a_grpc_port_in_use_exits_with_the_port_named(
    shared_port: int, tmp_path: Path
) -> None:
    argv = _sidecar(shared_port, free_port_block(1), tmp_path)
    code, err = await asyncio.to_thread(_run, argv, tmp_path)
    assert code == 1, err
    assert f"actorflow sidecar: cannot listen on 127.0.0.1:{shared_port} (gRPC API)" in err
    assert "Traceback" not in err


def test_a_sidecar_on_an_http_port_in_use_exits_with_the_port_named(
    plain_port: int, tmp_path: Path
) -> None:
    code, err = _run(_sidecar(free_port_block(1), plain_port, tmp_path), tmp_path)
    assert code == 1, err
    assert f"actorflow sidecar: cannot listen on 127.0.0.1:{plain_port} (HTTP API)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("service", ["placement", "reminders"])
async def test_a_raft_node_on_an_api_port_in_use_exits_with_the_port_named(
    service: str, shared_port: int, tmp_path: Path
) -> None:
    base = free_port_block(5)
    raft, peer_raft, peer_api, other_raft, other_api = (base + i for i in range(5))
    argv = [
        service, "--node-id=n0", f"--api-address=127.0.0.1:{shared_port}",
        f"--raft-address=127.0.0.1:{raft}", f"--data-dir={tmp_path / 'node'}",
        f"--peer=127.0.0.1:{peer_raft}=127.0.0.1:{peer_api}",
        f"--peer=127.0.0.1:{other_raft}=127.0.0.1:{other_api}",
    ]  # fmt: skip
    env = {"ACTORFLOW_RAFT_PASSWORD": "test-secret"}
    code, err = await asyncio.to_thread(_run, argv, tmp_path, env)
    assert code == 1, err
    assert f"actorflow {service}: cannot listen on 127.0.0.1:{shared_port}" in err
    assert "Traceback" not in err


def test_a_second_up_on_a_data_dir_in_use_starts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "af"
    data.mkdir()
    lock = data / "up.lock"
    with lock.open("w") as held:  # as the running `up` holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        code, err = _run(["actorflow", "up", f"--data-dir={data}"], tmp_path)
    assert code == 1, err
    assert f"actorflow up: {data} is in use by another actorflow up (pid 4242)" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in data.iterdir()) == ["up.lock"]  # nothing started


def test_up_reports_a_sidecar_that_cannot_start_and_stops_the_rest(
    plain_port: int, tmp_path: Path
) -> None:
    data = tmp_path / "af"
    argv = ["actorflow", "up", f"--data-dir={data}", "--sidecars=1",
            f"--base-grpc-port={free_port_block(1)}", f"--base-http-port={plain_port}"]  # fmt: skip
    code, err = _run(argv, tmp_path)
    assert code == 1, err
    assert "actorflow up: sidecar-0 exited before READY" in err
    assert f"cannot listen on 127.0.0.1:{plain_port} (HTTP API)" in err
    assert "Traceback" not in err
    left = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True, check=False)
    assert left.stdout == "", left.stdout  # the control plane it started is stopped


@pytest.mark.parametrize("app_id", ["bad id", "a||b", "x" * 257, "caf\u00e9"])
def test_an_app_id_placement_would_refuse_is_refused_at_start(
    app_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to start, be refused by placement on every try, log nothing and never
    join (`actorflow scale --add --app-id "bad id"` hung until its health timeout)."""
    assert sidecar_main([f"--app-id={app_id}", "--placement=127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert f"actorflow sidecar: app id {app_id[:80]!r} is invalid" in err


def test_scale_without_a_running_up_says_so(tmp_path: Path) -> None:
    code, err = _run(["actorflow", "scale", "--add", f"--data-dir={tmp_path}"], tmp_path)
    assert code == 1
    assert f"actorflow scale: no actorflow up is running with --data-dir {tmp_path}" in err
    assert "Traceback" not in err
