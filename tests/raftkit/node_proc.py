"""One raftkit node in its own process, driven over stdin/stdout by the tests and by
bench_raft.py. Not collected by pytest.

    python tests/raftkit/node_proc.py --config '{"self_address": ..., ...}' [--sync none]

The state machine appends `body["value"]` to a list. Requests are JSON lines
`{"id": n, "op": ..., ...}`, answered by `{"id": n, "ok": true, ...}` or `{"id": n,
"ok": false, "error": ..., "message": ...}`; requests run concurrently. Closing stdin
stops the node cleanly; the tests also SIGKILL it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

from raftkit import (
    Command,
    Entry,
    RaftConfig,
    RaftError,
    RaftNode,
    RaftStatus,
    Role,
    decode_snapshot,
    encode_snapshot,
)


class ListMachine:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def apply(self, command: Command, entry: Entry) -> object:
        if command.kind != "append":
            raise ValueError(f"unknown command kind {command.kind!r}")
        self.values.append(command.body["value"])
        return entry.index

    def snapshot(self) -> bytes:
        return encode_snapshot(self.values)

    def restore(self, data: bytes) -> None:
        self.values = list(decode_snapshot(data))


def _status(node: RaftNode, machine: ListMachine) -> dict[str, Any]:
    s = node.status()
    journal = node.journal
    return {
        "address": s.self_address,
        "role": s.role.name,
        "term": s.term,
        "leader": s.leader,
        "has_quorum": s.has_quorum,
        "commit_index": s.commit_index,
        "last_applied": s.last_applied,
        "count": len(machine.values),
        "syncs": journal.sync_count if journal else None,
        "appended": journal.appended_count if journal else None,
    }


class Server:
    def __init__(self, node: RaftNode, machine: ListMachine) -> None:
        self.node = node
        self.machine = machine

    async def op_status(self) -> dict[str, Any]:
        return _status(self.node, self.machine)

    async def op_values(self) -> dict[str, Any]:
        return {"values": self.machine.values}

    async def op_wait_leader(
        self, timeout: float, min_term: int = 0, exclude: list[str] | None = None
    ) -> dict[str, Any]:
        excluded = set(exclude or [])

        def settled(s: RaftStatus) -> bool:
            if s.leader is None or s.term < min_term or s.leader in excluded:
                return False
            # A leader reports itself only once it has heard from a majority.
            return s.role is not Role.LEADER or s.has_quorum

        await self.node.wait_for(settled, timeout=timeout)
        return _status(self.node, self.machine)

    async def op_wait_count(self, count: int, timeout: float) -> dict[str, Any]:
        await self.node.wait_for(lambda _s: len(self.machine.values) >= count, timeout=timeout)
        return _status(self.node, self.machine)

    async def op_propose(self, values: list[Any], timeout: float) -> dict[str, Any]:
        async def one(value: Any) -> dict[str, Any]:
            try:
                index = await self.node.propose(
                    Command("append", {"value": value}), timeout=timeout
                )
            except RaftError as exc:
                return {"error": type(exc).__name__, "message": str(exc)}
            return {"index": index}

        return {"results": await asyncio.gather(*(one(v) for v in values))}

    async def op_bench(self, sequential: int, total: int, concurrency: int) -> dict[str, Any]:
        node = self.node
        latencies = []
        for i in range(sequential):
            t0 = time.perf_counter()
            await node.propose(Command("append", {"value": f"s{i}"}), timeout=10)
            latencies.append(time.perf_counter() - t0)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await node.propose(Command("append", {"value": f"c{i}"}), timeout=30)

        journal = node.journal
        syncs_before = journal.sync_count if journal else 0
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = time.perf_counter() - t0
        latencies.sort()
        return {
            "latency_p50_ms": 1000 * latencies[len(latencies) // 2],
            "latency_p99_ms": 1000 * latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
            "latency_mean_ms": 1000 * sum(latencies) / len(latencies),
            "commits_per_s": total / elapsed,
            "leader_syncs": (journal.sync_count - syncs_before) if journal else None,
        }


async def serve(node: RaftNode, machine: ListMachine) -> None:
    loop = asyncio.get_running_loop()
    server = Server(node, machine)
    out_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(request: dict[str, Any]) -> None:
        rid = request.pop("id")
        op = request.pop("op")
        try:
            result = await getattr(server, f"op_{op}")(**request)
            reply = {"id": rid, "ok": True, **result}
        except Exception as exc:
            reply = {"id": rid, "ok": False, "error": type(exc).__name__, "message": str(exc)}
        async with out_lock:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        task = asyncio.create_task(handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _no_sync(fd: int) -> None:
    pass


def _slow_sync(fd: int) -> None:
    """A disk without a write cache: every sync costs 2 ms more."""
    os.fdatasync(fd)
    time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--sync", choices=["fdatasync", "none", "slow"], default="fdatasync")
    args = parser.parse_args()
    level = os.environ.get("RAFTKIT_TEST_LOG", "WARNING")  # INFO shows dump loads
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    config = RaftConfig.from_mapping(json.loads(args.config))
    machine = ListMachine()
    sync_fn = {"none": _no_sync, "slow": _slow_sync}.get(args.sync)
    node = RaftNode(config, machine, sync_fn=sync_fn)
    node.start()
    sys.stdout.write(json.dumps({"event": "started", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        asyncio.run(serve(node, machine))
    finally:
        node.close()


if __name__ == "__main__":
    main()
