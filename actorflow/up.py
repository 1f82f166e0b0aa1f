"""`actorflow up`: a whole cluster on loopback, as separate processes, in the foreground.

3 placement nodes, 3 reminders nodes, the state store (one SQLite file shared by the
sidecars, or a 3-member etcd cluster with `--store etcd` unless `--etcd-endpoints` names
one), and N sidecars. Everything lives under `--data-dir` (default `./.actorflow`):

    DIR/cluster.json     written once every sidecar answers healthz (DESIGN.md 3.3)
    DIR/ports.json       control-plane ports chosen on first start, reused on restart
    DIR/secret           the Raft shared secret, made on first start (mode 0600)
    DIR/placement/pN  DIR/reminders/rN  DIR/etcd/eN  DIR/state.db
    DIR/logs/*.log       one log per process
    DIR/control.sock     `actorflow scale` talks to the running `up` through it
    DIR/up.lock          locked by the running `up`: a second one on DIR refuses to start

A restart with the same directory recovers every workflow and reminder. SIGINT or
SIGTERM stops the sidecars first (they leave placement and drain their actors), then
reminders, placement and etcd. A process that dies is reported and not restarted.

Scaling while it runs: `actorflow scale --add [--app-id ID]` starts one more sidecar,
`actorflow scale --remove NAME` stops one (graceful: it leaves placement, its actors
move). Both update cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from actorflow.cluster import Cluster
from actorflow.procs import StartError
from actorflow.scale import scale_main
from actorflow.up_options import (
    CONTROL_SOCKET,
    ETCD_COMPACTION_RETENTION,
    ETCD_MAX_TXN_OPS,
    ETCD_QUOTA_BYTES,
    LOCK_FILE,
    PEER_PORT_OFFSET,
    TLS_ENV_PREFIX,
    DataDirBusyError,
    SidecarSpec,
    UpOptions,
)

# Re-exported: these were defined here before the split, and other code and the tests
# still import them from `actorflow.up`.
__all__ = [
    "CONTROL_SOCKET",
    "ETCD_COMPACTION_RETENTION",
    "ETCD_MAX_TXN_OPS",
    "ETCD_QUOTA_BYTES",
    "LOCK_FILE",
    "PEER_PORT_OFFSET",
    "TLS_ENV_PREFIX",
    "Cluster",
    "DataDirBusyError",
    "SidecarSpec",
    "UpOptions",
    "build_parser",
    "main",
    "run_up",
    "scale_main",
]


async def run_up(opts: UpOptions) -> int:
    cluster = Cluster(opts)
    try:
        cluster._prepare()
    except DataDirBusyError as exc:
        print(f"actorflow up: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = None
    code = 0
    try:
        await cluster.start_control_plane()
        apps = opts.app_ids or ["app"] * opts.sidecars
        for app_id in apps:
            await cluster.add_sidecar(app_id)
        sock = cluster.dir / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        control = await asyncio.start_unix_server(cluster.handle_control, path=str(sock))
        cluster.write_cluster_json()
        print(
            f"actorflow up: {len(cluster.sidecars)} sidecars ready; {cluster.dir / 'cluster.json'}",
            flush=True,
        )
        for s in cluster.sidecars.values():
            print(f"  {s.name}: app {s.app_id}  grpc {s.grpc}  http http://{s.http}", flush=True)
        await _watch(cluster, stop)
    except StartError as exc:
        print(f"actorflow up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if control is not None:
            control.close()
        await cluster.stop()
        cluster._unlock_dir()
    return code


async def _watch(cluster: Cluster, stop: asyncio.Event) -> None:
    """Wait for a stop signal; report (never restart) processes that die meanwhile."""
    reported: set[str] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        for name, proc in list(cluster.procs.items()):
            if not proc.alive and name not in reported:
                reported.add(name)
                print(
                    f"actorflow up: {name} exited with code {proc.returncode}; "
                    f"not restarting (log: {proc.log_path})",
                    file=sys.stderr,
                    flush=True,
                )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actorflow up",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=Path(".actorflow"))
    p.add_argument("--sidecars", type=int, default=2)
    p.add_argument("--app-ids", default="", help="one sidecar per app id, comma-separated")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    p.add_argument("--etcd-endpoints", default="", help="use this etcd cluster (host:port,...)")
    p.add_argument("--base-grpc-port", type=int, default=50001)
    p.add_argument("--base-http-port", type=int, default=3500)
    p.add_argument("--test-actors", action="store_true", help="sidecars host `counter` actors")
    p.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS between all nodes (a CA and certificate made in DATA_DIR/tls; "
        "each sidecar's peer API on --base-peer-port + its index)",
    )
    p.add_argument(
        "--base-peer-port",
        type=int,
        default=None,
        help="with --tls: the first sidecar's peer port (default: --base-grpc-port + 1000)",
    )
    p.add_argument(
        "--etcd-quota-bytes",
        type=int,
        default=ETCD_QUOTA_BYTES,
        help="with --store etcd: the space quota of the etcd members up starts (default 8 GiB)",
    )
    p.add_argument(
        "--etcd-compaction-retention",
        default=ETCD_COMPACTION_RETENTION,
        help="with --store etcd: how much key history those members keep, as an etcd "
        "duration (default 5m; older revisions are compacted away; 0 keeps all)",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.sidecars < 1 and not args.app_ids:
        print("actorflow up: --sidecars must be at least 1", file=sys.stderr)
        return 2
    opts = UpOptions(
        data_dir=args.data_dir,
        sidecars=args.sidecars,
        app_ids=[a for a in args.app_ids.split(",") if a],
        store=args.store,
        etcd_endpoints=[e for e in args.etcd_endpoints.split(",") if e],
        base_grpc_port=args.base_grpc_port,
        base_http_port=args.base_http_port,
        test_actors=args.test_actors,
        tls=args.tls,
        base_peer_port=args.base_peer_port,
        etcd_quota_bytes=args.etcd_quota_bytes,
        etcd_compaction_retention=args.etcd_compaction_retention,
    )
    from placement.cli import run_event_loop

    code = 0

    async def run() -> None:
        nonlocal code
        code = await run_up(opts)

    run_event_loop(run())
    return code
