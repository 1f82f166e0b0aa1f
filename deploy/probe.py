#!/usr/bin/env python3
"""`actorflow-probe`: readiness checks for containers, Compose health checks and scripts.

    actorflow-probe placement [HOST:PORT]   # 0 when the node knows a Raft leader
    actorflow-probe reminders [HOST:PORT]   # 0 when the node knows a Raft leader
    actorflow-probe sidecar [HOST:PORT]     # 0 when GET /v1.0/healthz answers 204

Placement and reminders have no HTTP endpoint; their gRPC `GetPlacementInfo` /
`GetRemindersInfo` say whether the node follows (or is) a leader. A node that is up but
cut off from its peers (no leader) is not ready, which holds a rolling update back until
the Raft group has its quorum again. Liveness should stay a TCP check on the API port:
a node without a leader is waiting for its peers, not broken.

The address defaults to the component's own environment variable
(`ACTORFLOW_PLACEMENT_API_ADDRESS`, `ACTORFLOW_REMINDERS_API_ADDRESS`,
`ACTORFLOW_SIDECAR_HTTP_ADDRESS`), with a wildcard host (0.0.0.0, ::) replaced by
loopback. With `ACTORFLOW_TLS_CA`, `_CERT` and `_KEY` set (as for the node itself), the
gRPC probes use mutual TLS. Exit status: 0 ready, 1 not ready, 2 usage.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 3.0

_DEFAULTS = {
    "placement": ("ACTORFLOW_PLACEMENT_API_ADDRESS", "127.0.0.1:50005"),
    "reminders": ("ACTORFLOW_REMINDERS_API_ADDRESS", "127.0.0.1:50006"),
    "sidecar": ("ACTORFLOW_SIDECAR_HTTP_ADDRESS", "127.0.0.1:3500"),
}


def _dialable(address: str) -> str:
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _channel(address: str) -> Any:
    """Over mutual TLS when the node's own environment sets it up (raftkit.tls)."""
    import grpc

    from raftkit.tls import TlsFiles

    tls = TlsFiles.from_env()
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, tls.channel_credentials(), tls.channel_options())


def _raft_leader(component: str, address: str) -> tuple[bool, str]:
    import grpc

    with _channel(address) as channel:
        try:
            if component == "placement":
                from placement.api.v1 import placement_pb2, placement_pb2_grpc

                pinfo = placement_pb2_grpc.PlacementStub(channel).GetPlacementInfo(
                    placement_pb2.GetPlacementInfoRequest(), timeout=TIMEOUT_S
                )
                leader, term = pinfo.leader_address, pinfo.term
            else:
                from reminders.api.v1 import reminders_pb2, reminders_pb2_grpc

                rinfo = reminders_pb2_grpc.RemindersStub(channel).GetRemindersInfo(
                    reminders_pb2.GetRemindersInfoRequest(), timeout=TIMEOUT_S
                )
                leader, term = rinfo.leader_address, rinfo.term
        except grpc.RpcError as exc:
            return False, f"{component} {address}: {exc.code().name}"
    if not leader:
        return False, f"{component} {address}: no Raft leader known (term {term})"
    return True, f"{component} {address}: leader {leader} (term {term})"


def _sidecar_healthy(address: str) -> tuple[bool, str]:
    url = f"http://{address}/v1.0/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return False, f"sidecar {url}: {exc}"
    return status == 204, f"sidecar {url}: HTTP {status}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _DEFAULTS or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    component = argv[0]
    env_name, fallback = _DEFAULTS[component]
    address = _dialable(argv[1] if len(argv) > 1 else os.environ.get(env_name, fallback))
    if component == "sidecar":
        ok, message = _sidecar_healthy(address)
    else:
        from raftkit.tls import TlsError

        try:
            ok, message = _raft_leader(component, address)
        except TlsError as exc:
            print(f"actorflow-probe: {exc}", file=sys.stderr)
            return 2
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
