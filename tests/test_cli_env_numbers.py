"""The number flags of placement, reminders and the sidecar take their environment
fallback through argparse: a good value arrives as a number, a bad one is a usage error
(exit 2, the flag named), never a traceback at start-up."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from placement.cli import build_parser as placement_parser
from reminders.cli import _parser as reminders_parser
from sidecar.cli import build_parser as sidecar_parser

# The flags each command requires, so that only the number is in question.
ARGS = {
    "actorflow reminders": [
        "--node-id=r0", "--api-address=127.0.0.1:1", "--raft-address=127.0.0.1:2",
        "--data-dir=unused",
    ],
}  # fmt: skip

CASES: list[tuple[Callable[[], argparse.ArgumentParser], str, str, str]] = [
    (placement_parser, "ACTORFLOW_PLACEMENT_HOST_TIMEOUT", "host_timeout", "--host-timeout"),
    (placement_parser, "ACTORFLOW_PLACEMENT_DROP_GRACE", "drop_grace", "--drop-grace"),
    (placement_parser, "ACTORFLOW_PLACEMENT_ACK_TIMEOUT", "ack_timeout", "--ack-timeout"),
    (reminders_parser, "ACTORFLOW_REMINDERS_ACK_TIMEOUT", "ack_timeout", "--ack-timeout"),
    (reminders_parser, "ACTORFLOW_REMINDERS_FIRE_LINGER", "fire_linger", "--fire-linger"),
    (sidecar_parser, "ACTORFLOW_SIDECAR_CALL_TIMEOUT", "call_timeout", "--call-timeout"),
    (sidecar_parser, "ACTORFLOW_SIDECAR_IDLE_TIMEOUT", "idle_timeout", "--idle-timeout"),
    (sidecar_parser, "ACTORFLOW_SIDECAR_MAX_PAYLOAD_BYTES", "max_payload_bytes",
     "--max-payload-bytes"),
    (sidecar_parser, "ACTORFLOW_SIDECAR_APP_ACTIVITY_WINDOW", "app_activity_window",
     "--app-activity-window"),
]  # fmt: skip


@pytest.mark.parametrize(("parser", "env", "dest", "flag"), CASES)
def test_the_environment_value_is_parsed_like_the_flag(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    parser: Callable[[], argparse.ArgumentParser],
    env: str,
    dest: str,
    flag: str,
) -> None:
    p = parser()
    argv = ARGS.get(p.prog, [])
    monkeypatch.setenv(env, "7")
    assert getattr(parser().parse_args(argv), dest) == 7  # a number, not the text
    monkeypatch.setenv(env, "soon")
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)  # a usage error naming the flag, not a traceback
    assert exit_info.value.code == 2
    assert f"argument {flag}: invalid" in capsys.readouterr().err
