"""The peer transport alone: `ActorPeer` with no actors, placement or store behind it.

`python -m bench.peer_floor --port P` serves the sidecar's own `PeerService` (the
`CallActorStream` and `CallActor` handlers, same code, same server options) whose
"actor" answers every call at once with its payload. `actorflow bench actors` calls it
through the sidecar's own `PeerPool` at the same rate as the real calls, in the same run
and beside the same cluster: the difference between the two is what actorflow adds on
top of grpc.aio on this machine. Over mutual TLS when `ACTORFLOW_TLS_*` are set.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import uvloop

from raftkit.listen import bind_grpc
from raftkit.tls import TlsFiles
from sidecar.actors.peer import PeerService


async def _echo(actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
    return payload


async def _unlocked() -> int:
    return 1


async def serve(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((PeerService(_echo, _unlocked).handler(),))
    bound = bind_grpc(server, f"127.0.0.1:{port}", "peer floor", TlsFiles.from_env())
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {bound}", flush=True)
    await stop.wait()
    await server.stop(grace=None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peer_floor", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    uvloop.run(serve(p.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
