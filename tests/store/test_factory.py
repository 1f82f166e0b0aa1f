"""`open_store` URLs and configuration validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.store import (
    EtcdConfig,
    EtcdTls,
    MemoryConfig,
    MemoryStore,
    SqliteConfig,
    StoreConfigError,
    open_store,
    parse_store_url,
)


def test_memory_url() -> None:
    assert parse_store_url("memory://") == MemoryConfig()
    assert parse_store_url("memory://?max_txn_ops=5") == MemoryConfig(max_txn_ops=5)


def test_sqlite_url_paths() -> None:
    assert parse_store_url("sqlite:///var/lib/af/state.db") == SqliteConfig(
        Path("/var/lib/af/state.db")
    )
    assert parse_store_url("sqlite://state.db?busy_timeout_ms=50") == SqliteConfig(
        Path("state.db"), busy_timeout_ms=50
    )


def test_etcd_url_with_tls_and_limits() -> None:
    config = parse_store_url(
        "etcd://10.0.0.1:2379,10.0.0.2:2379?ca=/p/ca.pem&cert=/p/c.pem&key=/p/k.pem"
        "&server_name=etcd.local&max_txn_ops=2048&timeout_s=2.5"
    )
    assert config == EtcdConfig(
        ("10.0.0.1:2379", "10.0.0.2:2379"),
        tls=EtcdTls(Path("/p/ca.pem"), Path("/p/c.pem"), Path("/p/k.pem"), "etcd.local"),
        max_txn_ops=2048,
        timeout_s=2.5,
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "memory://somewhere",
        "memory://?max_ops=3",
        "sqlite://",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?busy_timeout_ms=soon",
        "etcd://",
        "etcd://hostwithoutport",
        "etcd://h:1?cert=/c.pem&key=/k.pem",
        "etcd://h:1?ca=/ca.pem&cert=/c.pem",
        "etcd://h:1?timeout_s=0",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreConfigError):
        parse_store_url(url)


async def test_open_store_from_a_url_or_a_config(tmp_path: Path) -> None:
    assert isinstance(await open_store("memory://"), MemoryStore)
    store = await open_store(f"sqlite://{tmp_path}/state.db")
    assert await store.transact({"k": b"v"}) > 0
    await store.close()
    assert (tmp_path / "state.db").exists()
