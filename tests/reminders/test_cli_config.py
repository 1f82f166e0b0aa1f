"""`python -m reminders` flag and configuration checks (no process started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkit.errors import ConfigError
from reminders.cli import main
from reminders.config import RemindersConfig, parse_peer

BASE = ["--node-id", "r0", "--api-address", "127.0.0.1:7101", "--raft-address", "127.0.0.1:7201"]


def test_refuses_to_run_without_a_raft_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACTORFLOW_RAFT_PASSWORD", raising=False)
    assert main([*BASE, "--data-dir", str(tmp_path)]) == 2
    assert "password" in capsys.readouterr().err


def test_bad_peer_is_a_config_error(tmp_path: Path) -> None:
    assert main([*BASE, "--data-dir", str(tmp_path), "--peer", "nonsense"]) == 2
    with pytest.raises(ConfigError):
        parse_peer("127.0.0.1:1=")


def test_config_maps_leader_raft_address_to_api_address(tmp_path: Path) -> None:
    config = RemindersConfig(
        node_id="r0",
        api_address="127.0.0.1:7101",
        raft_address="127.0.0.1:7201",
        peers={"127.0.0.1:7202": "127.0.0.1:7102"},
        data_dir=tmp_path,
        raft_password="secret",
    )
    assert config.api_address_of("127.0.0.1:7202") == "127.0.0.1:7102"
    assert config.api_address_of("127.0.0.1:7201") == "127.0.0.1:7101"
    assert config.raft_config().password == "secret"
    with pytest.raises(ConfigError):
        RemindersConfig(
            node_id="r0",
            api_address="127.0.0.1:7101",
            raft_address="127.0.0.1:7201",
            peers={},
            data_dir=tmp_path,
            batch_size=0,
            raft_password="secret",
        )


def test_fire_linger_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*BASE, "--data-dir", str(tmp_path), "--insecure-raft"]
    assert main([*args, "--fire-linger", "-1"]) == 2
    assert "fire_linger_ms" in capsys.readouterr().err
    assert main([*args, "--fire-linger", "5000"]) == 2
    assert "fire_linger_ms" in capsys.readouterr().err
