"""`python -m reminders` / `actorflow reminders`: run one node of the reminders cluster.

    python -m reminders --node-id r1 --api-address 127.0.0.1:7101 \
        --raft-address 127.0.0.1:7201 --peer 127.0.0.1:7202=127.0.0.1:7102 \
        --peer 127.0.0.1:7203=127.0.0.1:7103 --data-dir ./data/r1 --raft-password SECRET

The Raft password may come from `ACTORFLOW_RAFT_PASSWORD` instead of the flag (flags are
visible in `ps`). `--insecure-raft` runs without one, for throwaway tests only. Once
serving, the node prints one line `READY {json}` on stdout (node id, API and Raft
addresses). SIGINT or SIGTERM stops it cleanly: the API stops accepting, streams drain
for up to a second, Raft closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from raftkit.errors import ConfigError, RaftError
from raftkit.listen import BindError
from raftkit.node import exit_on_journal_failure
from raftkit.service import freeze_startup_objects
from raftkit.tls import TlsFiles
from reminders.config import RemindersConfig, parse_peer

__all__ = ["main"]

log = logging.getLogger("reminders")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ACTORFLOW_REMINDERS_{name}", default)


def _parser() -> argparse.ArgumentParser:
    """Every flag falls back to `ACTORFLOW_REMINDERS_<FLAG>` (containers, systemd)."""
    p = argparse.ArgumentParser(prog="actorflow reminders", description="Run one reminders node.")
    for flag, env, help_ in (
        ("--node-id", "NODE_ID", "env ACTORFLOW_REMINDERS_NODE_ID"),
        ("--api-address", "API_ADDRESS", "gRPC host:port (env ..._API_ADDRESS)"),
        ("--raft-address", "RAFT_ADDRESS", "Raft host:port, peers only (env ..._RAFT_ADDRESS)"),
    ):
        value = _env(env)
        p.add_argument(flag, default=value, required=value is None, help=help_)
    peers = [x for x in (_env("PEERS", "") or "").split(",") if x]
    p.add_argument(
        "--peer", action="append", default=None, metavar="RAFT=API",
        help="another node, repeatable (env ..._PEERS, comma separated)",
    )  # fmt: skip
    p.set_defaults(env_peers=peers)
    data_dir = _env("DATA_DIR")
    p.add_argument("--data-dir", type=Path, default=Path(data_dir) if data_dir else None,
                   required=data_dir is None)  # fmt: skip
    p.add_argument(
        "--raft-bind-address", default=_env("RAFT_BIND_ADDRESS"),
        help="host:port the Raft port binds to, when it differs from --raft-address",
    )  # fmt: skip
    p.add_argument("--raft-password", default=None, help="or ACTORFLOW_RAFT_PASSWORD")
    p.add_argument("--insecure-raft", action="store_true", help="no Raft password (tests only)")
    p.add_argument("--ack-timeout", type=float, default=_env("ACK_TIMEOUT", "5"),
                   help="seconds before a resend")  # fmt: skip
    p.add_argument("--fire-linger", type=int, default=_env("FIRE_LINGER", "10"),
                   help="ms a due reminder may wait while firings are in flight")  # fmt: skip
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    return p


def _config(ns: argparse.Namespace) -> RemindersConfig:
    peers: dict[str, str] = {}
    for text in ns.peer if ns.peer is not None else ns.env_peers:
        raft, api = parse_peer(text)
        if raft in peers:
            raise ConfigError(f"peer {raft} given twice")
        peers[raft] = api
    password = ns.raft_password or os.environ.get("ACTORFLOW_RAFT_PASSWORD") or None
    return RemindersConfig(
        node_id=ns.node_id,
        api_address=ns.api_address,
        raft_address=ns.raft_address,
        peers=peers,
        data_dir=ns.data_dir,
        raft_password=password,
        allow_insecure_raft=ns.insecure_raft,
        ack_timeout_s=ns.ack_timeout,
        fire_linger_ms=ns.fire_linger,
        raft_overrides={"bind_address": ns.raft_bind_address} if ns.raft_bind_address else {},
        tls=TlsFiles.from_env(),
    )


async def _serve(config: RemindersConfig) -> None:
    from reminders.server import RemindersNode

    node = RemindersNode(config, on_journal_failure=exit_on_journal_failure)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    freeze_startup_objects()
    ready = {"node_id": config.node_id, "api": config.api_address, "raft": config.raft_address}
    print("READY " + json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("reminders node %s stopping", config.node_id)
        await node.stop()


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = _config(ns)
    except ConfigError as exc:
        print(f"actorflow reminders: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_serve(config))
    except (ConfigError, RaftError, BindError) as exc:
        print(f"actorflow reminders: {exc}", file=sys.stderr)
        return 1
    return 0
