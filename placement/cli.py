"""`python -m placement` / `actorflow placement`: run one placement node.

Every flag also reads an environment variable (shown in `--help`), the usual way for
containers and systemd units. The node runs until SIGINT or SIGTERM, then stops the gRPC
server, the control loop and Raft, in that order.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from placement.config import PlacementConfig
from placement.server import PlacementNode
from raftkit.errors import ConfigError, RaftError
from raftkit.listen import BindError
from raftkit.node import exit_on_journal_failure
from raftkit.peers import parse_peer
from raftkit.service import freeze_startup_objects
from raftkit.tls import TlsFiles

log = logging.getLogger("placement")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ACTORFLOW_PLACEMENT_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actorflow placement", description=__doc__)
    p.add_argument("--node-id", default=_env("NODE_ID"), help="env ACTORFLOW_PLACEMENT_NODE_ID")
    p.add_argument(
        "--api-address",
        default=_env("API_ADDRESS", "127.0.0.1:50005"),
        help="gRPC address for sidecars (env ..._API_ADDRESS)",
    )
    p.add_argument(
        "--raft-address",
        default=_env("RAFT_ADDRESS"),
        help="pysyncobj address for peers (env ..._RAFT_ADDRESS)",
    )
    p.add_argument(
        "--raft-bind-address",
        default=_env("RAFT_BIND_ADDRESS"),
        help="host:port the Raft port binds to, when it differs from --raft-address "
        "(e.g. 0.0.0.0:PORT behind a DNS name; env ..._RAFT_BIND_ADDRESS)",
    )
    p.add_argument(
        "--peer",
        action="append",
        default=None,
        metavar="RAFT=API",
        help="another node, repeatable (env ..._PEERS, comma separated)",
    )
    p.add_argument("--data-dir", default=_env("DATA_DIR"), help="env ..._DATA_DIR")
    p.add_argument(
        "--raft-password",
        default=os.environ.get("ACTORFLOW_RAFT_PASSWORD"),
        help="shared Raft secret (prefer env ACTORFLOW_RAFT_PASSWORD)",
    )
    p.add_argument(
        "--insecure-raft",
        action="store_true",
        help="run the Raft port without a password (tests only)",
    )
    p.add_argument("--host-timeout", type=float, default=_env("HOST_TIMEOUT", "5"))
    p.add_argument("--drop-grace", type=float, default=_env("DROP_GRACE", "1.5"))
    p.add_argument("--ack-timeout", type=float, default=_env("ACK_TIMEOUT", "3"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> PlacementConfig:
    if not args.node_id or not args.raft_address or not args.data_dir:
        raise ConfigError("--node-id, --raft-address and --data-dir are required")
    peers_text = (
        args.peer
        if args.peer is not None
        else [p for p in (_env("PEERS", "") or "").split(",") if p]
    )
    peers = dict(parse_peer(p) for p in peers_text)
    return PlacementConfig(
        node_id=args.node_id,
        api_address=args.api_address,
        raft_address=args.raft_address,
        peers=peers,
        data_dir=Path(args.data_dir),
        raft_password=args.raft_password or None,
        allow_insecure_raft=args.insecure_raft,
        host_timeout_s=args.host_timeout,
        drop_grace_s=args.drop_grace,
        ack_timeout_s=args.ack_timeout,
        raft_overrides={"bind_address": args.raft_bind_address} if args.raft_bind_address else {},
        tls=TlsFiles.from_env(),
    )


async def serve(config: PlacementConfig) -> None:
    node = PlacementNode(config, on_journal_failure=exit_on_journal_failure)
    port = await node.start()
    freeze_startup_objects()
    print(f"READY placement {config.node_id} api=127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("placement node %s stopping", config.node_id)
    await node.stop()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """One event loop per process: uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"actorflow placement: {exc}", file=sys.stderr)
        return 2
    try:
        run_event_loop(serve(config))
    except (RaftError, BindError) as exc:
        print(f"actorflow placement: {exc}", file=sys.stderr)
        return 1
    return 0
