"""`bench.peer_floor` answers peer calls through the sidecar's own PeerPool, then stops;
over mutual TLS when given the files, as `actorflow bench actors --tls` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actorflow.certs import write_cluster_certs
from bench import actors_bench
from raftkit.tls import TlsFiles
from sidecar.actors.peer import PeerPool
from sidecar.api.v1 import actors_pb2 as pb


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
async def test_peer_floor_echoes_payloads_and_stops_on_sigterm(tmp_path: Path, tls: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORFLOW_TLS_")}
    files = None
    if tls:
        paths = write_cluster_certs(tmp_path / "tls")
        env.update(paths.env())
        files = TlsFiles.load(paths.ca, paths.cert, paths.key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.peer_floor", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    pool = PeerPool(files)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY", ready
        address = f"127.0.0.1:{ready[1]}"
        for i in range(20):
            call = pb.ActorCall(
                call_id=pool.next_call_id(),
                actor=pb.ActorRef(actor_type="any", actor_id=str(i)),
                method="get",
                payload=f"p{i}".encode(),
                table_version=1,
            )
            result = await pool.call(address, call, 5.0)
            assert result.status == pb.CALL_STATUS_OK
            assert result.payload == f"p{i}".encode()
    finally:
        await pool.close()
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_bench_actors_over_tls_reports_its_calls(tmp_path: Path) -> None:
    out = tmp_path / "actors.json"
    argv = ["--tls", "--rate", "100", "--seconds", "1", "--warmup", "10", "--json", str(out), "-q"]
    assert actors_bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["params"]["tls"] is True
    assert report["metrics"]["calls"] == 100
    assert report["metrics"]["peer_floor_p50_ms"] > 0
