"""The etcd members `actorflow up --store etcd` starts compact their history by
themselves (`--etcd-compaction-retention`, 5 min by default; 2 s here). Without it etcd
keeps every revision of every key, about 5 kB per one-activity workflow, until its
database reaches the quota and every write is refused (they ran without it before)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from sidecar.store import EtcdStore
from sidecar.store.etcd import EtcdConfig

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1, "store": "etcd", "up_args": ["--etcd-compaction-retention=2s"]}


def _compacted_revision(endpoint: str) -> int:
    """etcd's own figure of the revision its history was last compacted at (-1: never)."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("etcd_debugging_mvcc_compact_revision "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd's metrics have no etcd_debugging_mvcc_compact_revision")


async def _rewrite(endpoints: list[str], times: int) -> int:
    store = await EtcdStore.open(EtcdConfig(endpoints=tuple(endpoints)))
    try:
        revision = 0
        for i in range(times):
            revision = await store.transact({"test/rewritten": b"%d" % i})
        return revision
    finally:
        await store.close()


def test_up_starts_etcd_members_that_compact_their_history(cluster: Any, uid: Any) -> None:
    c = cluster.client(0)
    iid = c.schedule_new_workflow("fan", input=3, instance_id=uid("fan"))
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and json.loads(state.serialized_output) == 6
    endpoints = cluster.info["store"]["endpoints"]
    written = asyncio.run(_rewrite(endpoints, 20))
    cluster.eventually(  # compactions go through Raft: every member applies them
        "etcd's history was not compacted",
        lambda: all(_compacted_revision(e) >= written for e in endpoints),
        timeout_s=30,
    )
