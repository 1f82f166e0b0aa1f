"""RaftConfig validation and its SyncObjConf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pysyncobj import HAS_CRYPTO

from raftkit import ConfigError, RaftConfig, Security


def _mapping(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "self_address": "127.0.0.1:7001",
        "partners": ["127.0.0.1:7002", "127.0.0.1:7003"],
        "data_dir": str(tmp_path),
        "password": "s3cret",
        "security": "hmac",
    }
    values.update(changes)
    return values


def test_valid_mapping(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path))
    assert config.partners == ("127.0.0.1:7002", "127.0.0.1:7003")
    assert config.data_dir == tmp_path
    assert config.security is Security.HMAC
    assert config.cluster_size == 3


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    # The kind of typo pysyncobj would silently ignore.
    with pytest.raises(ConfigError, match="leader_fallback_timeout"):
        RaftConfig.from_mapping(_mapping(tmp_path, leader_fallback_timeout=1.0))


def test_missing_keys_are_named(tmp_path: Path) -> None:
    values = _mapping(tmp_path)
    del values["partners"]
    with pytest.raises(ConfigError, match="partners"):
        RaftConfig.from_mapping(values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"partners": ["127.0.0.1:7001", "127.0.0.1:7002"]}, "also listed as a partner"),
        ({"partners": ["127.0.0.1:7002", "127.0.0.1:7002"]}, "duplicate partners"),
        ({"partners": "127.0.0.1:7002"}, "partners must be a list"),
        ({"self_address": "127.0.0.1"}, "host:port"),
        ({"self_address": "127.0.0.1:0"}, "port must be"),
        ({"self_address": "127.0.0.1:65536"}, "port must be"),
        ({"self_address": ":7001"}, "bad host"),
        ({"self_address": "bad host:7001"}, "bad host"),
        ({"partners": ["[::1:7002"]}, "bad host"),
        ({"bind_address": "0.0.0.0:x"}, "port must be"),
        ({"password": ""}, "password is empty"),
        ({"password": None}, "no password"),
        ({"security": "rot13"}, "security must be one of"),
        ({"heartbeat_interval_s": 0}, "must be positive"),
        ({"election_timeout_min_s": -1.0}, "must be positive"),
        ({"leader_fallback_timeout_s": float("nan")}, "wrong type or value"),
        ({"heartbeat_interval_s": "0.05"}, "wrong type or value"),
        ({"commands_queue_size": True}, "wrong type or value"),
        ({"durable_journal": 1}, "wrong type or value"),
        ({"election_timeout_min_s": 0.1}, "3 \\* heartbeat"),
        ({"election_timeout_max_s": 0.3}, "must exceed election_timeout_min_s"),
        ({"leader_fallback_timeout_s": 0.01}, "must exceed heartbeat"),
        ({"connection_timeout_s": 0.5}, "at least election_timeout_max_s"),
        ({"log_compaction_min_entries": 1}, "at least 2"),
        ({"bind_retries": 0}, "retry forever"),
        ({"data_dir": ""}, "data_dir"),
    ],
)
def test_bad_values(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RaftConfig.from_mapping(_mapping(tmp_path, **changes))


def test_insecure_only_when_asked(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path, password=None, allow_insecure=True))
    assert config.to_syncobj_conf().password is None


def test_config_is_frozen(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path))
    with pytest.raises(AttributeError):
        config.password = "other"  # type: ignore[misc]


def test_syncobj_conf(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path))
    conf = config.to_syncobj_conf()
    assert conf.appendEntriesUseBatch is False
    assert conf.leaderFallbackTimeout <= 2.0
    assert conf.useFork is False
    assert conf.dynamicMembershipChange is False
    assert conf.commandsWaitLeader is False
    assert conf.autoTick is True
    assert conf.appendEntriesPeriod * 3 < conf.raftMinTimeout < conf.raftMaxTimeout
    assert conf.connectionRetryTime <= 1.0
    assert Path(conf.journalFile).parent == tmp_path
    assert Path(conf.fullDumpFile).parent == tmp_path
    assert conf.bindAddress == "127.0.0.1:7001"  # not 0.0.0.0
    assert conf.password is None  # hmac is installed by raftkit, not by pysyncobj
    conf.validate()


def test_journal_file_differs_by_journal_kind(tmp_path: Path) -> None:
    durable = RaftConfig.from_mapping(_mapping(tmp_path))
    plain = RaftConfig.from_mapping(_mapping(tmp_path, durable_journal=False))
    assert durable.journal_path != plain.journal_path


def test_unknown_pysyncobj_hook_is_rejected(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path))
    with pytest.raises(ConfigError, match="hooks"):
        config.to_syncobj_conf(onStateChange=print)


@pytest.mark.skipif(HAS_CRYPTO, reason="cryptography is installed")
def test_fernet_without_cryptography_is_a_config_error(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path, security="fernet"))
    with pytest.raises(ConfigError, match="cryptography"):
        config.to_syncobj_conf()


@pytest.mark.skipif(not HAS_CRYPTO, reason="cryptography is not installed")
def test_fernet_sets_the_pysyncobj_password(tmp_path: Path) -> None:
    config = RaftConfig.from_mapping(_mapping(tmp_path, security="fernet"))
    assert config.to_syncobj_conf().password == "s3cret"
