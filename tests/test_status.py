"""`actorflow status`: the health verdict and its argument errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actorflow import status


def _node(leader: bool, term: int, quorum: bool = True, ok: bool = True) -> dict[str, Any]:
    return {"ok": ok, "leader": leader, "term": term, "quorum": quorum, "address": "x"}


def _report(placement: list[dict[str, Any]], sidecars_ok: bool = True) -> dict[str, Any]:
    return {
        "placement": placement,
        "reminders": [_node(True, 3), _node(False, 3), _node(False, 3)],
        "sidecars": [{"address": "http://s", "ok": sidecars_ok}],
    }


def test_one_leader_with_quorum_is_healthy() -> None:
    assert status.healthy(_report([_node(True, 2), _node(False, 2), _node(False, 2)]))


@pytest.mark.parametrize(
    "placement",
    [
        [_node(False, 2), _node(False, 2), _node(False, 2)],  # no leader
        [_node(True, 2, quorum=False), _node(False, 2), _node(False, 2)],  # leader, no quorum
        [_node(True, 2), _node(True, 3), _node(False, 3)],  # a second leader at a newer term
        [_node(True, 2), _node(False, 2), _node(False, 2, ok=False)],  # a node down
    ],
)
def test_unhealthy_services(placement: list[dict[str, Any]]) -> None:
    assert not status.healthy(_report(placement))


def test_a_sidecar_down_is_unhealthy() -> None:
    assert not status.healthy(
        _report([_node(True, 2), _node(False, 2), _node(False, 2)], sidecars_ok=False)
    )


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert status.main([]) == 2
    assert status.main(["--cluster", str(tmp_path / "missing.json")]) == 2


def test_unreachable_node_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(["--placement", "127.0.0.1:1", "--timeout", "0.5"]) == 1
    assert "DOWN" in capsys.readouterr().out
