"""The deployment files configure the components the way the components read it: each
pod's, service's and unit's settings go through the real CLI parsers and config
classes, and the addresses the nodes call themselves match what their peers and the
sidecars dial. The Kubernetes start scripts run for real under /bin/sh, with the
kubelet's `$(VAR)` expansion reproduced and a stand-in `actorflow` that reports what it
was given."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from actorflow.certs import CertPaths, write_cluster_certs
from placement import cli as placement_cli
from placement.config import PlacementConfig
from placement.localcluster import free_port
from reminders import cli as reminders_cli
from reminders.config import RemindersConfig
from sidecar import cli as sidecar_cli
from sidecar.config import SidecarConfig
from sidecar.store.etcd import EtcdConfig
from sidecar.store.factory import parse_store_url

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_DIR = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
SYSTEMD_DIR = DEPLOY / "systemd"
NAMESPACE = "actorflow"
POD_IP = "192.0.2.7"  # documentation range: only ever a string in a config here
SECRET = "test-secret"
REPORTER = f"""#!{sys.executable}
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.startswith(("ACTORFLOW_", "DAPR_"))}}
print(json.dumps({{"argv": sys.argv[1:], "env": env}}))
"""

Manifest = dict[str, Any]


# ---- helpers -------------------------------------------------------------------------


def kube_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of `$(VAR)` in env values, command and args: `$$` is a
    literal `$`, an unknown or unclosed reference stays as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        close = text.find(")", i + 2) if nxt == "(" else -1
        if nxt == "$":
            out.append("$")
        elif close != -1:
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
            continue
        else:
            out.append("$" + nxt)
        i += 2
    return "".join(out)


def manifests() -> list[Manifest]:
    docs: list[Manifest] = []
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        docs += [d for d in YAML(typ="safe").load_all(path.read_text()) if d]
    return docs


def workload(kind: str, name: str) -> Manifest:
    found = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def container(manifest: Manifest, name: str) -> Manifest:
    containers: list[Manifest] = manifest["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def pod_env(spec: Manifest, pod_name: str) -> dict[str, str]:
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE, "status.podIP": POD_IP}
    env: dict[str, str] = {}
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = kube_expand(item["value"], env)
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = SECRET
    return env


def run_container(spec: Manifest, pod_name: str, bin_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Run the container's command as the kubelet would, with stand-ins for `actorflow`
    (reports its arguments and environment) and `getent` (the pod's name resolves)."""
    env = pod_env(spec, pod_name)
    argv = [kube_expand(a, env) for a in [*spec.get("command", ["actorflow"]), *spec["args"]]]
    done = subprocess.run(
        argv,
        env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return report["argv"], report["env"]


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    for name, body in (("actorflow", REPORTER), ("getent", "#!/bin/sh\nexit 0\n")):
        stand_in = tmp_path / name
        stand_in.write_text(body)
        stand_in.chmod(0o755)
    return tmp_path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("ACTORFLOW_", "DAPR_")):
            monkeypatch.delenv(key)
    return monkeypatch


def parse_placement(
    argv: list[str], env: dict[str, str], mp: pytest.MonkeyPatch
) -> PlacementConfig:
    assert argv[0] == "placement", argv
    for key, value in env.items():
        mp.setenv(key, value)
    return placement_cli.config_from_args(placement_cli.build_parser().parse_args(argv[1:]))


def parse_reminders(
    argv: list[str], env: dict[str, str], mp: pytest.MonkeyPatch
) -> RemindersConfig:
    assert argv[0] == "reminders", argv
    for key, value in env.items():
        mp.setenv(key, value)
    return reminders_cli._config(reminders_cli._parser().parse_args(argv[1:]))


def parse_sidecar(argv: list[str], env: dict[str, str], mp: pytest.MonkeyPatch) -> SidecarConfig:
    assert argv[0] == "sidecar", argv
    for key, value in env.items():
        mp.setenv(key, value)
    return sidecar_cli.config_from_args(sidecar_cli.build_parser().parse_args(argv[1:]))


def check_raft_group(nodes: Mapping[str, PlacementConfig | RemindersConfig]) -> None:
    """Every node lists exactly the others, by the addresses they call themselves."""
    for name, config in nodes.items():
        assert config.node_id == name
        assert config.raft_password == SECRET or config.raft_password is None
        others = {c.raft_address: c.api_address for n, c in nodes.items() if n != name}
        assert config.peers == others, name


# ---- Kubernetes ----------------------------------------------------------------------


def kubernetes_group(kind: str, bin_dir: Path, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    sts = workload("StatefulSet", kind)
    spec = container(sts, kind)
    parse = parse_placement if kind == "placement" else parse_reminders
    nodes = {}
    for i in range(sts["spec"]["replicas"]):
        pod = f"{kind}-{i}"
        nodes[pod] = parse(*run_container(spec, pod, bin_dir), mp)
        host = f"{pod}.{sts['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert nodes[pod].raft_address == f"{host}:{ports['raft']}"
        assert nodes[pod].api_address == f"{host}:{ports['api']}"
        assert nodes[pod].raft_password == SECRET
        assert str(nodes[pod].data_dir).startswith(spec["volumeMounts"][0]["mountPath"])
    check_raft_group(nodes)
    return nodes


def test_kubernetes_control_plane_and_sidecar_agree(
    bin_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    placement = kubernetes_group("placement", bin_dir, clean_env)
    reminders = kubernetes_group("reminders", bin_dir, clean_env)
    for name in ("placement", "reminders", "etcd"):
        sts = workload("StatefulSet", name)
        service = workload("Service", sts["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert sts["spec"]["volumeClaimTemplates"]
        assert workload("PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1

    app = workload("Deployment", "app")
    spec = container(app, "actorflow-sidecar")
    clean_env.delenv("ACTORFLOW_PLACEMENT_PEERS", raising=False)
    sidecar = parse_sidecar(*run_container(spec, "app-0", bin_dir), clean_env)
    assert sidecar.placement == tuple(c.api_address for c in placement.values())
    assert sidecar.reminders == tuple(c.api_address for c in reminders.values())
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    # The app's API on loopback only; other sidecars dial the peer port, which the
    # liveness probe checks and the NetworkPolicy opens to sidecars only.
    assert sidecar.grpc_address.startswith("127.0.0.1:")
    assert sidecar.peer_address == f"0.0.0.0:{ports['peer']}"
    assert sidecar.advertise_address == f"{POD_IP}:{ports['peer']}"
    assert spec["livenessProbe"]["tcpSocket"]["port"] == "peer"
    policy = workload("NetworkPolicy", "sidecar-grpc")["spec"]["ingress"]
    peer_rule = next(r for r in policy if "from" in r)
    assert [p["port"] for p in peer_rule["ports"]] == [ports["peer"]]
    assert sidecar.api_token == SECRET
    app_env = {e["name"]: e.get("value") for e in container(app, "app")["env"]}
    assert app_env["DAPR_GRPC_ENDPOINT"] == f"127.0.0.1:{sidecar.grpc_address.split(':')[1]}"
    health = spec["readinessProbe"]["httpGet"]
    assert health["path"] == "/v1.0/healthz"

    store = parse_store_url(sidecar.store_url)
    assert isinstance(store, EtcdConfig)
    etcd = container(workload("StatefulSet", "etcd"), "etcd")
    etcd_args = [kube_expand(a, pod_env(etcd, "etcd-0")) for a in etcd["args"]]
    assert f"--max-txn-ops={store.max_txn_ops}" in etcd_args
    assert store.max_txn_ops == 10000
    cluster = next(a for a in etcd_args if a.startswith("--initial-cluster="))
    peer_hosts = re.findall(r"http://([^:,]+):2380", cluster)
    assert store.endpoints == tuple(f"{h}:2379" for h in peer_hosts)


# ---- Compose -------------------------------------------------------------------------


def compose_services() -> dict[str, Manifest]:
    services: dict[str, Manifest] = YAML(typ="safe").load(COMPOSE_FILE.read_text())["services"]
    return services


def compose_env(service: Manifest) -> dict[str, str]:
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    # Interpolation from .env, as `docker compose` does before anything starts.
    return {k: re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", SECRET, v) for k, v in env.items()}


def test_compose_services_configure_the_components(clean_env: pytest.MonkeyPatch) -> None:
    services = compose_services()
    placement = {}
    for name in ("placement-0", "placement-1", "placement-2"):
        clean_env.delenv("ACTORFLOW_PLACEMENT_PEERS", raising=False)
        svc = services[name]
        placement[name] = parse_placement(svc["command"], compose_env(svc), clean_env)
        assert placement[name].raft_password == SECRET
    check_raft_group(placement)
    reminders = {
        name: parse_reminders(services[name]["command"], compose_env(services[name]), clean_env)
        for name in ("reminders-0", "reminders-1", "reminders-2")
    }
    check_raft_group(reminders)
    for name, config in reminders.items():
        assert services[name]["healthcheck"]["test"][-1] == config.api_address

    for i in range(2):
        sidecar_svc = services[f"sidecar-{i}"]
        assert sidecar_svc["network_mode"] == f"service:app-{i}"
        assert services[f"app-{i}"]["environment"]["DAPR_GRPC_ENDPOINT"] == "127.0.0.1:50001"
        sidecar = parse_sidecar(sidecar_svc["command"], compose_env(sidecar_svc), clean_env)
        assert sidecar.grpc_address == "127.0.0.1:50001"  # the app shares the namespace
        assert sidecar.peer_address == "0.0.0.0:50002"
        assert sidecar.advertise_address == f"app-{i}:50002"
        assert sidecar.placement == tuple(c.api_address for c in placement.values())
        assert sidecar.reminders == tuple(c.api_address for c in reminders.values())
        store = parse_store_url(sidecar.store_url)
        assert isinstance(store, EtcdConfig)
        assert store.endpoints == ("etcd-0:2379", "etcd-1:2379", "etcd-2:2379")
        for etcd in ("etcd-0", "etcd-1", "etcd-2"):
            assert f"--max-txn-ops={store.max_txn_ops}" in services[etcd]["command"]


# ---- systemd -------------------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def unit_command(
    unit: Path, instance: str, env_files: list[Path]
) -> tuple[list[str], dict[str, str]]:
    """ExecStart as systemd runs it: `%i`, `${X}` (one word) and `$X` (split at spaces)."""
    text = unit.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for key, value in re.findall(r"^Environment=([A-Z_]+)=(.*)$", text, flags=re.MULTILINE):
        env[key] = value.replace("%i", instance)
    for path in env_files:
        env.update(env_file(path))
    exec_start = re.search(r"^ExecStart=(.*)$", text, flags=re.MULTILINE)
    assert exec_start is not None
    argv: list[str] = []
    for word in shlex.split(exec_start.group(1).replace("%i", instance)):
        if re.fullmatch(r"\$[A-Z_]+", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), word))
    assert argv[0] == "/opt/actorflow/bin/actorflow"
    return argv[1:], env


def tls_files_at(env: dict[str, str], made: CertPaths) -> dict[str, str]:
    """The example's TLS settings, with the files it names (under /etc/actorflow/tls/)
    replaced by ones made here, which the config classes read."""
    real = made.env()
    for key in real:
        assert env[key].startswith("/etc/actorflow/tls/"), (key, env[key])
    return {**env, **real}


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_systemd_units_with_the_example_settings(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, tls: bool
) -> None:
    examples = SYSTEMD_DIR / "env"
    raft_env = {"ACTORFLOW_RAFT_PASSWORD": SECRET}
    made = write_cluster_certs(tmp_path / "tls")
    tls_env = tls_files_at(env_file(examples / "tls.env.example"), made) if tls else {}
    for unit in ("placement", "reminders", "sidecar"):
        text = (SYSTEMD_DIR / f"actorflow-{unit}@.service").read_text()
        assert "\nEnvironmentFile=-/etc/actorflow/tls.env\n" in text, unit  # optional
    argv, env = unit_command(
        SYSTEMD_DIR / "actorflow-placement@.service", "p1", [examples / "placement-p1.env.example"]
    )
    placement = parse_placement(argv, {**env, **raft_env, **tls_env}, clean_env)
    assert (placement.tls is not None) == tls
    assert placement.node_id == "p1"
    assert str(placement.data_dir) == "/var/lib/actorflow/placement-p1"
    assert len(placement.peers) == 2

    argv, env = unit_command(
        SYSTEMD_DIR / "actorflow-reminders@.service", "r1", [examples / "reminders-r1.env.example"]
    )
    reminders = parse_reminders(argv, {**env, **raft_env, **tls_env}, clean_env)
    assert (reminders.tls is not None) == tls
    assert reminders.node_id == "r1"
    assert len(reminders.peers) == 2
    assert reminders.raft_password == SECRET

    argv, env = unit_command(
        SYSTEMD_DIR / "actorflow-sidecar@.service", "app", [examples / "sidecar-app.env.example"]
    )
    sidecar = parse_sidecar(argv, {**env, "DAPR_API_TOKEN": SECRET, **tls_env}, clean_env)
    assert (sidecar.tls is not None) == tls
    host = placement.api_address.split(":")[0]
    assert sidecar.grpc_address == "127.0.0.1:50001"
    assert sidecar.peer_address is not None
    assert sidecar.advertise_address == f"{host}:{sidecar.peer_address.split(':')[1]}"
    assert placement.api_address in sidecar.placement
    assert reminders.api_address in sidecar.reminders
    store = parse_store_url(sidecar.store_url)
    assert isinstance(store, EtcdConfig)
    etcd = env_file(examples / "etcd.env.example")
    assert int(etcd["ETCD_MAX_TXN_OPS"]) == store.max_txn_ops


# ---- the readiness probe -------------------------------------------------------------


def test_probe_reports_not_ready_without_a_server() -> None:
    probe = DEPLOY / "probe.py"
    for component in ("placement", "reminders", "sidecar"):
        done = subprocess.run(
            [sys.executable, str(probe), component, "127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 1, (component, done.stdout, done.stderr)
        assert component in done.stderr
    usage = subprocess.run(
        [sys.executable, str(probe), "etcd"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert usage.returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("component", ["placement", "reminders"])
def test_probe_reports_ready_once_a_node_leads(component: str, tmp_path: Path) -> None:
    """A one-node group elects itself: the probe must see the leader over real gRPC."""
    api, raft = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    node = subprocess.Popen(
        [
            *(sys.executable, "-m", component, "--node-id", "n0", "--api-address", api),
            *("--raft-address", raft, "--data-dir", str(tmp_path / "data"), "--insecure-raft"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline().startswith("READY"), "node did not start"
        probe = [sys.executable, str(DEPLOY / "probe.py"), component, api]
        deadline = time.monotonic() + 20
        while True:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
        assert done.returncode == 0, done.stderr
        assert f"leader {api}" in done.stdout, done.stdout
    finally:
        node.terminate()
        node.wait(timeout=30)
