"""`bench.peer_floor` answers peer calls through the sidecar's own PeerPool, then stops."""

from __future__ import annotations

import subprocess
import sys

from sidecar.actors.peer import PeerPool
from sidecar.api.v1 import actors_pb2 as pb


async def test_peer_floor_echoes_payloads_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.peer_floor", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    pool = PeerPool()
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
