"""`actorflow status`: what every node of a cluster says about itself, right now.

Asks each placement node (`GetPlacementInfo`) and each reminders node
(`GetRemindersInfo`) for its role, Raft term and quorum, each sidecar for
`/v1.0/healthz` and its app gauges (`/metrics`: apps connected, work queued for one), and
the state store: each etcd member for its status and alarms, or
the SQLite file's size and free disk (`actorflow.store_status`). Addresses come from
`--cluster DIR/cluster.json` (what `actorflow up` writes) or from `--placement`,
`--reminders`, `--sidecars` (comma separated) and `--store` (the sidecars' store URL). Over
mutual TLS with the files cluster.json names (`actorflow up --tls`), else with those of
`ACTORFLOW_TLS_CA`, `_CERT` and `_KEY` when set (`raftkit.tls`); then it also shows when
that certificate expires, flagged under RENEW_DAYS.

Prints a table, or one JSON object with `--json`. Exit status: 0 when every node
answered, each Raft service has exactly one leader with a quorum (and no node claims to
lead at a higher term than that leader) and no etcd member has an alarm, 1 otherwise, 2
on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from actorflow.certs import CertPaths
from actorflow.store_status import store_line, store_nodes
from placement.api.v1 import placement_pb2 as ppb
from raftkit.tls import TlsError, TlsFiles
from raftkit.tls import channel as tls_channel
from reminders.api.v1 import reminders_pb2 as rpb
from sidecar.engine.metrics import samples
from sidecar.store import StoreConfigError

__all__ = ["collect", "healthy", "main"]

RENEW_DAYS = 30  # a certificate with fewer days left is flagged
_PLACEMENT = "/actorflow.placement.v1.Placement/GetPlacementInfo"
_REMINDERS = "/actorflow.reminders.v1.Reminders/GetRemindersInfo"


async def _info(
    address: str, method: str, request: Any, reply: Any, *, timeout_s: float, tls: TlsFiles | None
) -> Any:
    async with tls_channel(address, tls) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        return await call(request, timeout=timeout_s)


async def _raft_node(
    kind: str, address: str, timeout_s: float, tls: TlsFiles | None
) -> dict[str, Any]:
    try:
        if kind == "placement":
            p: ppb.PlacementInfo = await _info(
                address, _PLACEMENT, ppb.GetPlacementInfoRequest(), ppb.PlacementInfo,
                timeout_s=timeout_s, tls=tls,
            )  # fmt: skip
            extra: dict[str, Any] = {"table_version": p.table_version, "hosts": len(p.hosts)}
            info: Any = p
        else:
            r: rpb.RemindersInfo = await _info(
                address, _REMINDERS, rpb.GetRemindersInfoRequest(), rpb.RemindersInfo,
                timeout_s=timeout_s, tls=tls,
            )  # fmt: skip
            extra = {"reminders": r.reminders, "subscribers": r.subscribers}
            info = r
    except grpc.aio.AioRpcError as exc:
        return {"address": address, "ok": False, "error": f"{exc.code().name}: {exc.details()}"}
    return {
        "address": address,
        "ok": True,
        "node_id": info.node_id,
        "leader": info.is_leader,
        "term": info.term,
        "quorum": info.has_quorum,
        "leader_address": info.leader_address,
        **extra,
    }


# The sidecar's gauges `actorflow status` shows, by the field it shows them under.
_APP_GAUGES = {
    "apps": "actorflow_app_connections",
    "queued_turns": "actorflow_workflow_work_items_queued",
    "queued_activities": "actorflow_activity_work_items_queued",
}


def app_gauges(metrics_text: str) -> dict[str, int]:
    """The app connections and the queued work, from a sidecar's `/metrics` text."""
    found = samples(metrics_text)
    return {field: int(found[name]) for field, name in _APP_GAUGES.items() if name in found}


async def _sidecar(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    base = url.rstrip("/")
    try:
        async with session.get(f"{base}/v1.0/healthz") as resp:
            node: dict[str, Any] = {"address": url, "ok": resp.status == 204, "status": resp.status}
        async with session.get(f"{base}/metrics") as resp:
            if resp.status == 200:
                node.update(app_gauges(await resp.text()))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"address": url, "ok": False, "error": str(exc) or type(exc).__name__}
    return node


def sidecar_line(node: dict[str, Any]) -> str:
    """One sidecar in `actorflow status`'s table: its health, then its apps."""
    if not node["ok"]:
        return f"{'sidecar':<10} {node['address']:<22} DOWN {node.get('error', node.get('status'))}"
    apps = node.get("apps")
    if apps is None:
        extra = ""
    elif apps:
        extra = f"{apps} app{'s' if apps != 1 else ''} connected"
    else:
        waiting = node.get("queued_turns", 0) + node.get("queued_activities", 0)
        extra = f"NO APP connected, {waiting} work item{'s' if waiting != 1 else ''} waiting"
    return f"{'sidecar':<10} {node['address']:<22} ok    {extra}".rstrip()


async def collect(
    placement: list[str],
    reminders: list[str],
    sidecars: list[str],
    timeout_s: float = 2.0,
    tls: TlsFiles | None = None,
    *,
    store_url: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every node's answer, asked all at once (over mutual TLS when `tls` is given); the
    store's when `store_url` names it."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        p, r, s, store = await asyncio.gather(
            asyncio.gather(*(_raft_node("placement", a, timeout_s, tls) for a in placement)),
            asyncio.gather(*(_raft_node("reminders", a, timeout_s, tls) for a in reminders)),
            asyncio.gather(*(_sidecar(session, url) for url in sidecars)),
            store_nodes(store_url, timeout_s),
        )
    return {"placement": list(p), "reminders": list(r), "sidecars": list(s), "store": store}


def _service_healthy(nodes: list[dict[str, Any]]) -> bool:
    if not nodes:
        return True
    leaders = [n for n in nodes if n["ok"] and n["leader"] and n["quorum"]]
    if not all(n["ok"] for n in nodes) or len(leaders) != 1:
        return False
    return all(n["term"] <= leaders[0]["term"] for n in nodes if n["leader"])


def healthy(report: dict[str, list[dict[str, Any]]]) -> bool:
    return (
        _service_healthy(report["placement"])
        and _service_healthy(report["reminders"])
        and all(s["ok"] for s in report["sidecars"])
        and all(n["ok"] for n in report.get("store", []))
    )


def _table(report: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for kind in ("placement", "reminders"):
        for n in report[kind]:
            if not n["ok"]:
                lines.append(f"{kind:<10} {n['address']:<22} DOWN  {n['error']}")
                continue
            role = "leader" if n["leader"] else "follower"
            extra = (
                f"table v{n['table_version']}, {n['hosts']} hosts"
                if kind == "placement"
                else f"{n['reminders']} reminders, {n['subscribers']} subscribers"
            )
            quorum = ("quorum" if n["quorum"] else "NO QUORUM") if n["leader"] else ""
            lines.append(
                f"{kind:<10} {n['address']:<22} {n['node_id']:<6} {role:<8} "
                f"term {n['term']:<4} {quorum:<9} {extra}"
            )
    lines += [sidecar_line(s) for s in report["sidecars"]]
    lines += [store_line(n) for n in report.get("store", [])]
    return "\n".join(lines)


def _tls(cluster: dict[str, Any]) -> TlsFiles | None:
    """The TLS files `actorflow up --tls` names in cluster.json, else the environment's."""
    files = cluster.get("tls")
    if isinstance(files, dict):
        return CertPaths.from_json(files).load()
    return TlsFiles.from_env()


def _certificate(tls: TlsFiles | None) -> dict[str, Any] | None:
    """The certificate this probe used (the cluster's, with `actorflow up --tls`)."""
    if tls is None:
        return None
    until = tls.valid_until()
    days = (until - datetime.datetime.now(datetime.UTC)).days
    return {"valid_until": until.isoformat(), "days_left": days}


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow status",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cluster", type=Path, help="cluster.json written by `actorflow up`")
    p.add_argument("--placement", help="placement API addresses, host:port,...")
    p.add_argument("--reminders", help="reminders API addresses, host:port,...")
    p.add_argument("--sidecars", help="sidecar HTTP base URLs, http://host:port,...")
    p.add_argument("--store", help="the sidecars' store URL (etcd://... or sqlite://...)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per node")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ns = p.parse_args(argv)
    cluster: dict[str, Any] = {}
    placement, reminders, sidecars = (
        _split(ns.placement), _split(ns.reminders), _split(ns.sidecars)
    )  # fmt: skip
    if ns.cluster is not None:
        try:
            cluster = json.loads(ns.cluster.read_text())
        except (OSError, ValueError) as exc:
            print(f"actorflow status: cannot read {ns.cluster}: {exc}", file=sys.stderr)
            return 2
        placement = placement or list(cluster.get("placement", []))
        reminders = reminders or list(cluster.get("reminders", []))
        sidecars = sidecars or [s["http"] for s in cluster.get("sidecars", [])]
    store_url = ns.store or cluster.get("store", {}).get("url")
    if not (placement or reminders or sidecars or store_url):
        print("actorflow status: give --cluster or some node addresses", file=sys.stderr)
        return 2
    try:
        tls = _tls(cluster)
    except TlsError as exc:
        print(f"actorflow status: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(
            collect(placement, reminders, sidecars, ns.timeout, tls, store_url=store_url)
        )
    except StoreConfigError as exc:
        print(f"actorflow status: {exc}", file=sys.stderr)
        return 2
    ok = healthy(report)
    certificate = _certificate(tls)
    if ns.json:
        print(json.dumps({**report, "healthy": ok, "tls": certificate}, sort_keys=True))
    else:
        print(_table(report))
        if certificate is not None:
            soon = " RENEW SOON" if certificate["days_left"] < RENEW_DAYS else ""
            print(f"tls        certificate valid until {certificate['valid_until']} "
                  f"({certificate['days_left']} days){soon}")  # fmt: skip
        print("healthy" if ok else "NOT HEALTHY")
    return 0 if ok else 1
