"""The app connection windows: flags, their environment fallbacks, and validation."""

from __future__ import annotations

import pytest

from raftkit.errors import ConfigError
from sidecar.cli import build_parser, config_from_args
from sidecar.config import SidecarConfig


def test_windows_default_to_no_limit() -> None:
    config = config_from_args(build_parser().parse_args(["--placement", "127.0.0.1:1"]))
    assert (config.app_activity_window, config.app_workflow_window) == (0, 0)


def test_windows_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTORFLOW_SIDECAR_APP_WORKFLOW_WINDOW", "16")
    args = build_parser().parse_args(["--placement", "127.0.0.1:1", "--app-activity-window", "128"])
    config = config_from_args(args)
    assert (config.app_activity_window, config.app_workflow_window) == (128, 16)


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="app windows"):
        SidecarConfig(placement=("127.0.0.1:1",), app_activity_window=-1)
