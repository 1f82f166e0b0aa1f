"""`python -m sidecar` / `actorflow sidecar`: run one sidecar.

Flags fall back to environment variables (`ACTORFLOW_SIDECAR_*`, and Dapr's own
`DAPR_API_TOKEN`), the usual way for containers and systemd units. Runs until SIGINT or
SIGTERM, then leaves placement, drains its actors and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

from placement.cli import run_event_loop
from raftkit.errors import ConfigError
from raftkit.listen import BindError
from raftkit.service import freeze_startup_objects
from raftkit.tls import TlsFiles
from sidecar.app import Sidecar
from sidecar.config import SidecarConfig
from sidecar.http import serve_http

log = logging.getLogger("sidecar")

# Allocations between two young GC passes (CPython's default: 700). In-process, 5,000
# activity dispatches cost 510-520 us of CPU each at 700 and 270-280 us at 10,000; in
# alternated 10,000-activity fan-outs the sidecar's CPU per activity went down 7-8%.
GC_YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """The sidecar's young threshold for the cyclic collector (the others as they are)."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ACTORFLOW_SIDECAR_{name}", default)


def _addresses(text: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in (text or "").split(",") if a.strip())


# The number flags: (flag, type, ACTORFLOW_SIDECAR_* name, default, help). The
# environment's value is a string default that argparse parses like the flag's own, so
# a bad one is a usage error naming the flag.
_NUMBER_FLAGS: tuple[tuple[str, type, str, str, str], ...] = (
    ("--activity-sweep", float, "ACTIVITY_SWEEP", "5",
     "seconds between the checks that delete an activity's saved outcome when it landed "
     "after its instance was purged"),
    ("--app-activity-window", int, "APP_ACTIVITY_WINDOW", "0",
     "activity work items one app connection may hold unanswered (0: no limit)"),
    ("--app-workflow-window", int, "APP_WORKFLOW_WINDOW", "0",
     "workflow work items one app connection may hold unanswered (0: no limit)"),
    ("--app-wait-warn", float, "APP_WAIT_WARN", "10",
     "seconds work may wait with no app connected before the sidecar logs a warning "
     "(again each minute while it lasts)"),
    ("--call-timeout", float, "CALL_TIMEOUT", "30",
     "seconds an actor call (and so an HTTP or gRPC request on a workflow) may take to "
     "find and reach its owner; then 503 / UNAVAILABLE"),
    ("--idle-timeout", float, "IDLE_TIMEOUT", "60",
     "seconds an actor with nothing to do stays active (a workflow between steps; an "
     "activity actor is kept while its activity runs, however long)"),
    ("--max-payload-bytes", int, "MAX_PAYLOAD_BYTES", str(4 << 20),
     "largest HTTP body and gRPC message accepted or sent (default 4 MiB)"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    # Number flags take their environment fallback as a string default, which argparse
    # parses like the flag itself: a bad value is a clean usage error, not a traceback.
    p = argparse.ArgumentParser(prog="actorflow sidecar", description=__doc__)
    p.add_argument("--app-id", default=_env("APP_ID", "app"))
    p.add_argument("--namespace", default=_env("NAMESPACE", "default"))
    p.add_argument("--grpc-address", default=_env("GRPC_ADDRESS", "127.0.0.1:50001"))
    p.add_argument("--http-address", default=_env("HTTP_ADDRESS", "127.0.0.1:3500"))
    p.add_argument(
        "--advertise-address",
        default=_env("ADVERTISE_ADDRESS"),
        help="address other sidecars dial (default: --peer-address, else --grpc-address)",
    )
    p.add_argument(
        "--peer-address",
        default=_env("PEER_ADDRESS"),
        help="serve other sidecars' actor calls here, not on --grpc-address (required "
        "with TLS: ACTORFLOW_TLS_CA, _CERT, _KEY)",
    )
    p.add_argument("--placement", default=_env("PLACEMENT"), help="comma-separated API addresses")
    p.add_argument("--reminders", default=_env("REMINDERS"), help="comma-separated API addresses")
    p.add_argument(
        "--store",
        default=_env("STORE", "sqlite://.actorflow/state.db"),
        help="memory://, sqlite://PATH or etcd://HOST:PORT,...",
    )
    p.add_argument(
        "--api-token",
        default=os.environ.get("DAPR_API_TOKEN"),
        help="required on every app call when set (env DAPR_API_TOKEN)",
    )
    p.add_argument("--test-actors", action="store_true", help="host the `counter` test actor")
    p.add_argument("--turn-log", type=Path, default=None, help="counter actors' turn log")
    for flag, kind, env, default, text in _NUMBER_FLAGS:
        p.add_argument(flag, type=kind, default=_env(env, default), help=text)
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> SidecarConfig:
    return SidecarConfig(
        app_id=args.app_id,
        namespace=args.namespace,
        grpc_address=args.grpc_address,
        http_address=args.http_address,
        advertise_address=args.advertise_address,
        peer_address=args.peer_address,
        tls=TlsFiles.from_env(),
        placement=_addresses(args.placement),
        reminders=_addresses(args.reminders),
        store_url=args.store,
        api_token=args.api_token or None,
        test_actors=args.test_actors,
        turn_log=args.turn_log,
        app_activity_window=args.app_activity_window,
        app_workflow_window=args.app_workflow_window,
        call_timeout_s=args.call_timeout,
        activity_sweep_s=args.activity_sweep,
        app_wait_warn_s=args.app_wait_warn,
        idle_timeout_s=args.idle_timeout,
        max_payload_bytes=args.max_payload_bytes,
    )


async def serve(config: SidecarConfig) -> None:
    sidecar = Sidecar(config)
    await sidecar.start()
    try:
        runner = await serve_http(sidecar)
    except BindError:
        await sidecar.stop()  # leaves placement before the process ends
        raise
    # Objects made at start-up live as long as the process: keep the cyclic collector
    # from walking them again and again (long gen-2 pauses show up as tail latency).
    freeze_startup_objects()
    # Every activity makes dozens of short-lived containers (tasks, futures, messages);
    # with the default 700 most young passes walk objects that would have died anyway.
    tune_collector()
    print(
        "READY "
        + json.dumps(
            {
                "app_id": config.app_id,
                "grpc": config.grpc_address,
                "http": f"http://{config.http_address}",
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("sidecar %s stopping", config.name)
    await runner.cleanup()
    await sidecar.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"actorflow sidecar: {exc}", file=sys.stderr)
        return 2
    try:
        run_event_loop(serve(config))
    except BindError as exc:
        print(f"actorflow sidecar: {exc}", file=sys.stderr)
        return 1
    return 0
