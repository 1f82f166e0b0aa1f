"""Fixtures of the store tests: a store of each kind, and real etcd on loopback.

etcd comes from `sidecar.store.testing.EtcdCluster` (the Debian `etcd-server` binary, or
`$ACTORFLOW_ETCD`). Without it the etcd tests skip, except in CI (CI=true), where a
missing etcd fails them: `.ci/run` installs it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sidecar.store import MemoryConfig, MemoryStore, SqliteConfig, SqliteStore, StateStore
from sidecar.store.testing import EtcdCluster, etcd_binary

STORE_KINDS = ["memory", "sqlite", "etcd"]
_namespaces = itertools.count()


def require_etcd() -> str:
    binary = etcd_binary()
    if binary is None:
        message = "no etcd binary: install Debian's etcd-server or set ACTORFLOW_ETCD"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _start_cluster(base_dir: Path, size: int, **kwargs: Any) -> EtcdCluster:
    require_etcd()
    cluster = EtcdCluster(base_dir, size, **kwargs)
    # Its own thread and loop: the fixture may be set up while a test's loop runs.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, cluster.start()).result()
    return cluster


StartCluster = Callable[..., EtcdCluster]
OpenKind = Callable[..., Awaitable[StateStore]]


@pytest.fixture
def start_cluster() -> Iterator[StartCluster]:
    """`start_cluster(base_dir, size, **EtcdCluster options)`; stopped after the test."""
    started: list[EtcdCluster] = []

    def start(base_dir: Path, size: int, **kwargs: Any) -> EtcdCluster:
        started.append(_start_cluster(base_dir, size, **kwargs))
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member shared by the session; tests keep apart by key namespace."""
    cluster = _start_cluster(tmp_path_factory.mktemp("etcd-single"), 1)
    yield cluster
    cluster.stop()


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own, so tests sharing one etcd never meet."""
    return f"t{os.getpid()}-{next(_namespaces)}||"


async def _open_kind(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, **limits: int
) -> StateStore:
    """A fresh store of `kind`; `limits` are max_txn_ops / max_txn_bytes overrides."""
    if kind == "memory":
        return MemoryStore(MemoryConfig(**limits))
    if kind == "sqlite":
        return await SqliteStore.open(SqliteConfig(tmp_path / "state.db", **limits))
    cluster: EtcdCluster = request.getfixturevalue("etcd_single")
    overrides: dict[str, int] = {}
    if "max_txn_ops" in limits:
        overrides["max_txn_ops"] = limits["max_txn_ops"]
    if "max_txn_bytes" in limits:
        overrides["max_request_bytes"] = limits["max_txn_bytes"] + 64 * 1024
    from sidecar.store import EtcdStore

    return await EtcdStore.open(cluster.store_config(**overrides))


@pytest.fixture
def open_kind(request: pytest.FixtureRequest) -> OpenKind:
    """`await open_kind(kind, directory, max_txn_ops=..., max_txn_bytes=...)`."""

    async def open_(kind: str, tmp_path: Path, **limits: int) -> StateStore:
        return await _open_kind(kind, request, tmp_path, **limits)

    return open_


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    opened = await _open_kind(request.param, request, tmp_path)
    yield opened
    await opened.close()
