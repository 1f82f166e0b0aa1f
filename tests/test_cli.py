from __future__ import annotations

import subprocess
import sys

import pytest

from actorflow import cli


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs_the_smoke_check() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "smoke"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "status PENDING" in done.stdout
    assert "UNIMPLEMENTED: RaiseEvent" in done.stdout
