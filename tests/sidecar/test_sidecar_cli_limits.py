"""The call timeout and the payload limit: flags, environment fallbacks, validation, and
the clear refusal of a bad value at start-up; and the advertised address, which must be
one other sidecars can dial."""

from __future__ import annotations

import pytest

from raftkit.errors import ConfigError
from sidecar.cli import build_parser, config_from_args, main
from sidecar.config import SidecarConfig

PLACEMENT = ["--placement", "127.0.0.1:1"]


def test_defaults() -> None:
    config = config_from_args(build_parser().parse_args(PLACEMENT))
    assert (config.call_timeout_s, config.max_payload_bytes) == (30.0, 4 << 20)


def test_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTORFLOW_SIDECAR_MAX_PAYLOAD_BYTES", "65536")
    config = config_from_args(build_parser().parse_args([*PLACEMENT, "--call-timeout", "2.5"]))
    assert (config.call_timeout_s, config.max_payload_bytes) == (2.5, 65536)


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), float("inf")])
def test_a_call_timeout_that_is_not_a_positive_number_is_refused(seconds: float) -> None:
    with pytest.raises(ConfigError, match="call_timeout_s must be a positive number"):
        SidecarConfig(placement=("127.0.0.1:1",), call_timeout_s=seconds)


def test_a_payload_limit_below_1_kib_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_payload_bytes must be at least 1024, got 512"):
        SidecarConfig(placement=("127.0.0.1:1",), max_payload_bytes=512)


def test_the_command_names_the_bad_value_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLACEMENT, "--call-timeout", "0"]) == 2
    assert "call_timeout_s must be a positive number of seconds, got 0.0" in capsys.readouterr().err


def test_a_bad_environment_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACTORFLOW_SIDECAR_CALL_TIMEOUT", "soon")
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(PLACEMENT)
    assert exit_info.value.code == 2
    assert "argument --call-timeout: invalid float value: 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("grpc", "peer"), [("0.0.0.0:50001", None), ("127.0.0.1:50001", "[::]:50002")]
)
def test_a_wildcard_address_others_would_dial_is_refused(grpc: str, peer: str | None) -> None:
    with pytest.raises(ConfigError, match="set --advertise-address"):
        SidecarConfig(placement=("127.0.0.1:1",), grpc_address=grpc, peer_address=peer)
    advertised = SidecarConfig(
        placement=("127.0.0.1:1",), grpc_address=grpc, peer_address=peer,
        advertise_address="node1.example.internal:50002",
    )  # fmt: skip
    assert advertised.name == "node1.example.internal:50002"
