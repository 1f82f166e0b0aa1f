"""`actorflow up --tls`: mutual TLS between every node (DESIGN.md 4.6). Placement,
reminders and the sidecars' peer ports take only clients with a certificate of the
cluster's CA; the app's port stays plaintext for the SDK, and no longer serves the peer
API (whoever reached it could call the engine's actors, a forged event for one)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow.certs import CertPaths, write_cluster_certs
from actorflow.status import collect, healthy
from raftkit.tls import TlsFiles
from sidecar.api.v1 import actors_pb2

CLUSTER = {"tls": True}
PROBE = Path(__file__).resolve().parents[2] / "deploy" / "probe.py"
CALL_ACTOR = "/actorflow.sidecar.v1.ActorPeer/CallActor"


def _cluster_tls(info: dict[str, Any]) -> TlsFiles:
    return CertPaths.from_json(info["tls"]).load()


def _forged_event(info: dict[str, Any]) -> actors_pb2.ActorCall:
    app = info["sidecars"][0]["app_id"]
    return actors_pb2.ActorCall(
        actor=actors_pb2.ActorRef(
            actor_type=f"dapr.internal.default.{app}.workflow", actor_id="someone"
        ),
        method="event",
        payload=b"\x80",
    )


def _call_actor(channel: grpc.Channel, call: actors_pb2.ActorCall) -> actors_pb2.ActorResult:
    stub = channel.unary_unary(
        CALL_ACTOR,
        request_serializer=actors_pb2.ActorCall.SerializeToString,
        response_deserializer=actors_pb2.ActorResult.FromString,
    )
    result: actors_pb2.ActorResult = stub(call, timeout=5)
    return result


def test_a_fan_out_runs_across_sidecars_over_tls(cluster: Any, uid: Any) -> None:
    c = cluster.client(0)
    iid = c.schedule_new_workflow("fan", input=300, instance_id=uid("tls-fan"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=120)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == sum(2 * i for i in range(300))
    # The activities ran beside both sidecars: their outcomes crossed the peer ports.
    for index in (0, 1):
        assert cluster.metric("actorflow_activity_work_items_total", index) > 0


def test_every_node_answers_a_client_of_the_clusters_ca_only(cluster: Any, tmp_path: Path) -> None:
    info = cluster.info
    nodes: tuple[list[str], list[str], list[str]] = (info["placement"], info["reminders"], [])
    ok = asyncio.run(collect(*nodes, tls=_cluster_tls(info)))
    assert healthy(ok), ok
    other = write_cluster_certs(tmp_path / "other")
    strangers = {
        "plaintext": None,
        "another CA": TlsFiles.load(other.ca, other.cert, other.key),
    }
    for who, tls in strangers.items():
        report = asyncio.run(collect(*nodes, timeout_s=3.0, tls=tls))
        answered = [n["address"] for kind in ("placement", "reminders") for n in report[kind]
                    if n["ok"]]  # fmt: skip
        assert not answered, f"{who} got answers from {answered}"


def test_the_peer_api_is_on_its_tls_port_only(cluster: Any, tmp_path: Path) -> None:
    info = cluster.info
    sidecar = info["sidecars"][0]
    call = _forged_event(info)
    # The app's port: plaintext as ever, but without the peer API.
    with grpc.insecure_channel(sidecar["grpc"]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            _call_actor(channel, call)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The peer port: nothing without a certificate of the cluster's CA.
    other = write_cluster_certs(tmp_path / "other")
    stranger = grpc.ssl_channel_credentials(
        other.ca.read_bytes(), other.key.read_bytes(), other.cert.read_bytes()
    )
    for channel in (
        grpc.insecure_channel(sidecar["peer"]),
        grpc.secure_channel(sidecar["peer"], stranger),
    ):
        with channel, pytest.raises(grpc.RpcError) as err:
            _call_actor(channel, call)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # With one, the call reaches the actor host (which answers for the unknown instance).
    tls = _cluster_tls(info)
    member = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
    with grpc.secure_channel(sidecar["peer"], member) as channel:
        result = _call_actor(channel, call)
    assert result.status in {
        actors_pb2.CALL_STATUS_NOT_OWNER,
        actors_pb2.CALL_STATUS_ACTOR_ERROR,
    }, result


def test_status_reads_the_tls_files_from_cluster_json(
    cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from actorflow import status

    cluster_json = str(cluster.up.data_dir / "cluster.json")
    assert status.main(["--cluster", cluster_json]) == 0
    assert "tls        certificate valid until" in capsys.readouterr().out
    assert status.main(["--cluster", cluster_json, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] and report["tls"]["days_left"] >= 824  # `up` makes 825 days


@pytest.mark.parametrize("component", ["placement", "reminders"])
def test_the_deploy_probe_speaks_tls_from_the_nodes_environment(
    cluster: Any, component: str
) -> None:
    files = CertPaths.from_json(cluster.info["tls"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORFLOW_TLS_")}
    address = cluster.info[component][0]

    def probe(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(PROBE), component, address],
            env={**env, **extra}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    with_tls = probe(files.env())
    assert with_tls.returncode == 0, with_tls.stderr
    assert "leader" in with_tls.stdout
    plaintext = probe({})
    assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr
    half = probe({"ACTORFLOW_TLS_CA": str(files.ca)})
    assert half.returncode == 2 and "missing ACTORFLOW_TLS_CERT" in half.stderr
