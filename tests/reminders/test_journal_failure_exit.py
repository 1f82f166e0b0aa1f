"""A reminders node whose Raft journal cannot be written (a full disk; here a file size
limit, `RLIMIT_FSIZE`, which CPython turns into EFBIG errors) exits with status 75 for
its supervisor to restart it, instead of living on with a node that refuses all work
for good (found with `actorflow up` on a full tmpfs: the three nodes stayed up, and no
timer fired again once the disk was freed). Started again without the limit, it
recovers from what is on disk: every reminder it acknowledged is there."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from raftkit import JOURNAL_FAILED_EXIT
from reminders.api.v1 import reminders_pb2 as pb
from reminders.client import RemindersClient
from reminders.testing import free_ports

pytestmark = pytest.mark.slow

LIMIT_BYTES = 256 * 1024
DATA = b"d" * 8192  # each registration adds about this much to the journal


def _key(i: int) -> pb.ReminderKey:
    return pb.ReminderKey(namespace="ns", app_id="app", actor_type="T", actor_id=f"a{i}", name="r")


def _start(root: Path, api: str, raft: str, *, limited: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "reminders", "--node-id", "r0", "--api-address", api,
            "--raft-address", raft, "--data-dir", str(root / "r0"), "--insecure-raft"]  # fmt: skip
    log = (root / "r0.log").open("ab")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the node prints READY once it serves
    assert line.startswith(b"READY"), (line, (root / "r0.log").read_text())
    if limited:  # from now on its files stop growing at LIMIT_BYTES (its log too)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))
    return proc


async def _register_until_it_exits(api: str, proc: subprocess.Popen[bytes]) -> list[int]:
    """Reminders it acknowledged, registered until the node is gone."""
    made: list[int] = []
    async with RemindersClient([api]) as client, asyncio.timeout(90):
        for i in range(10 * LIMIT_BYTES // len(DATA)):
            if proc.poll() is not None:
                break
            try:
                await asyncio.wait_for(client.create(_key(i), due_time="1h", data=DATA), 5)
            except (grpc.aio.AioRpcError, TimeoutError):
                continue  # refused or cut off once the journal failed
            made.append(i)
    return made


async def test_a_journal_it_cannot_write_ends_the_node_which_recovers_after(
    tmp_path: Path,
) -> None:
    api_port, raft_port = free_ports(2)
    api, raft = f"127.0.0.1:{api_port}", f"127.0.0.1:{raft_port}"
    proc = _start(tmp_path, api, raft, limited=True)
    try:
        made = await _register_until_it_exits(api, proc)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == JOURNAL_FAILED_EXIT, (tmp_path / "r0.log").read_text()[-3000:]
    assert "exiting with status 75" in (tmp_path / "r0.log").read_text()
    assert made, "nothing was acknowledged before the journal failed"
    again = _start(tmp_path, api, raft, limited=False)
    try:
        async with RemindersClient([api]) as client:
            for i in made:  # acknowledged: on disk
                assert (await client.get(_key(i))).data == DATA
    finally:
        again.terminate()
        again.wait(15)
