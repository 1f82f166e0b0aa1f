"""The state store's part of `actorflow status`.

For etcd, each member's Maintenance Status: its version, whether it leads, the size of
its database file and the part in use, and its alarms. A member with an alarm is not
healthy: NOSPACE (the database reached its quota) refuses every write of the cluster
until an operator compacts, defragments and disarms it (deploy/README.md, "etcd out of
space"). For SQLite, the file's size (with its WAL) and the free space of its disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from sidecar.store import EtcdStore, StoreError
from sidecar.store.etcd import EtcdConfig
from sidecar.store.factory import parse_store_url
from sidecar.store.sqlite import SqliteConfig

__all__ = ["store_line", "store_nodes"]

MB = 1024 * 1024


async def store_nodes(url: str | None, timeout_s: float) -> list[dict[str, Any]]:
    """One entry per etcd member, or one for the SQLite file (none for memory://, or
    without a URL)."""
    if url is None:
        return []
    config = parse_store_url(url)
    if isinstance(config, EtcdConfig):
        members = (_member(config, endpoint, timeout_s) for endpoint in config.endpoints)
        return list(await asyncio.gather(*members))
    if isinstance(config, SqliteConfig):
        return [_sqlite(Path(config.path))]
    return []


async def _member(config: EtcdConfig, endpoint: str, timeout_s: float) -> dict[str, Any]:
    one = dataclasses.replace(
        config,
        endpoints=(endpoint,),
        timeout_s=timeout_s,
        attempt_timeout_s=timeout_s,
        connect_timeout_s=min(1.0, timeout_s),
    )
    try:
        store = await EtcdStore.open(one)
        try:
            s = await store.status()
        finally:
            await store.close()
    except StoreError as exc:
        return {"address": endpoint, "kind": "etcd", "ok": False, "error": str(exc)}
    alarms = [alarm.strip() for alarm in s.errors]
    return {
        "address": endpoint,
        "kind": "etcd",
        "ok": not alarms,
        "version": s.version,
        "leader": s.leader == s.header.member_id,
        "db_bytes": s.dbSize,
        "in_use_bytes": s.dbSizeInUse,
        "alarms": alarms,
    }


def _sqlite(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"address": str(path), "kind": "sqlite", "ok": False, "error": "no such file"}
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    free = shutil.disk_usage(path.parent).free
    return {
        "address": str(path),
        "kind": "sqlite",
        "ok": True,
        "db_bytes": size,
        "free_bytes": free,
    }


def store_line(node: dict[str, Any]) -> str:
    """The node's line in `actorflow status`'s table."""
    head = f"{'store':<10} {node['address']:<22}"
    if "error" in node:
        return f"{head} DOWN  {node['error']}"
    if node["kind"] == "sqlite":
        return (
            f"{head} sqlite   {node['db_bytes'] / MB:.1f} MB, "
            f"{node['free_bytes'] / MB:,.0f} MB free on its disk"
        )
    role = "leader" if node["leader"] else "follower"
    alarms = f"  ALARM {'; '.join(node['alarms'])}" if node["alarms"] else ""
    return (
        f"{head} etcd {node['version']:<8} {role:<8} db {node['db_bytes'] / MB:.1f} MB "
        f"({node['in_use_bytes'] / MB:.1f} in use){alarms}"
    )
