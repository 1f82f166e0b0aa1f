"""`actorflow status`: the health verdict and its argument errors."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from actorflow import status
from sidecar.store import EtcdStore
from sidecar.store.testing import EtcdCluster, etcd_binary, fill_to_quota


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


def test_the_stores_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The SQLite file's size and free disk; a store URL that is not one exits 2."""
    db = tmp_path / "state.db"
    db.write_bytes(b"\0" * 4096)
    assert status.main(["--store", f"sqlite://{db}"]) == 0
    out = capsys.readouterr().out
    assert "sqlite" in out and "free on its disk" in out and "healthy" in out
    assert status.main(["--store", f"sqlite://{tmp_path / 'missing.db'}"]) == 1
    assert "no such file" in capsys.readouterr().out
    assert status.main(["--store", "redis://x"]) == 2


@pytest.mark.slow
def test_an_etcd_member_out_of_space_is_shown_and_unhealthy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """etcd's NOSPACE alarm (the quota reached: every write refused) is on the member's
    line and makes the cluster unhealthy; a member that cannot be reached is DOWN."""
    require_etcd()
    cluster = EtcdCluster(tmp_path, 1, extra_args=[f"--quota-backend-bytes={16 * 2**20}"])
    asyncio.run(cluster.start())
    url = f"etcd://{cluster.endpoints[0]}"
    try:
        assert status.main(["--store", url, "--json"]) == 0
        (member,) = json.loads(capsys.readouterr().out)["store"]
        assert member["leader"] and member["alarms"] == [] and member["db_bytes"] > 0
        asyncio.run(_fill(cluster))
        assert status.main(["--store", url]) == 1
        out = capsys.readouterr().out
        assert "ALARM" in out and "alarm:NOSPACE" in out and "NOT HEALTHY" in out
        assert status.main(["--store", "etcd://127.0.0.1:1", "--timeout", "0.5"]) == 1
        assert "DOWN" in capsys.readouterr().out
    finally:
        cluster.stop()


async def _fill(cluster: EtcdCluster) -> None:
    store = await EtcdStore.open(cluster.store_config())
    try:
        await fill_to_quota(store)
    finally:
        await store.close()


def require_etcd() -> None:
    if etcd_binary() is None:
        message = "no etcd binary: install Debian's etcd-server or set ACTORFLOW_ETCD"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_app_gauges_from_metrics_text() -> None:
    text = (
        "# TYPE actorflow_app_connections gauge\n"
        "actorflow_app_connections 0\n"
        "actorflow_workflow_work_items_queued 3\n"
        "actorflow_workflow_work_items_total 12\n"
        "actorflow_activity_work_items_queued 2.0\n"
        'actorflow_workflows_finished_total{status="COMPLETED"} 5\n'
    )
    assert status.app_gauges(text) == {"apps": 0, "queued_turns": 3, "queued_activities": 2}
    assert status.app_gauges("actorflow_app_connections nan?\n") == {}


def test_sidecar_lines() -> None:
    up = {"address": "http://s:1", "ok": True, "status": 204}
    assert status.sidecar_line(up).split() == ["sidecar", "http://s:1", "ok"]
    one = status.sidecar_line({**up, "apps": 1, "queued_turns": 0, "queued_activities": 0})
    assert one.endswith("ok    1 app connected")
    none = status.sidecar_line({**up, "apps": 0, "queued_turns": 1, "queued_activities": 2})
    assert none.endswith("NO APP connected, 3 work items waiting")
    down = status.sidecar_line({"address": "http://s:1", "ok": False, "error": "refused"})
    assert down.endswith("DOWN refused")
