"""A real 3-node cluster, one process per node, SIGKILLed and restarted from its data
directories. Proves with pysyncobj 0.3.17 plus raftkit's journal that the term, the vote
and the log survive: a new leader has a higher term, a killed node catches up, and a
full stop and restart recovers every committed command exactly once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from raftkit_harness import Cluster, NodeProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _propose(node: NodeProcess, values: list[int]) -> list[int]:
    results = node.request("propose", values=values, timeout=15.0)["results"]
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    return [r["index"] for r in results]


def _values(node: NodeProcess) -> list[int]:
    return list(node.request("values", timeout=5.0)["values"])


def test_leader_kill_catch_up_and_full_restart(tmp_path: Path) -> None:
    # Compaction every ~16 entries: restarts load msgpack dumps, and the killed node
    # may have to be sent one.
    with Cluster(tmp_path, log_compaction_min_entries=16) as cluster:
        cluster.start_all()
        first, term1 = cluster.wait_leader()
        committed = list(range(30))
        indices = _propose(first, committed)
        assert len(set(indices)) == len(committed)  # one log entry per command
        cluster.wait_count(cluster.nodes, len(committed))

        first.kill()
        second, term2 = cluster.wait_leader(exclude=(first.address,))
        assert second is not first
        assert term2 > term1
        more = list(range(30, 60))
        _propose(second, more)
        committed += more
        cluster.wait_count(cluster.live(), len(committed))

        first.start()
        cluster.wait_count([first], len(committed))
        assert _values(first) == committed

        for node in cluster.nodes:
            node.kill()
        for node in cluster.nodes:
            node.start()
        third, term3 = cluster.wait_leader()
        # The term was persisted: the first election after the restart goes above it.
        assert term3 > term2
        cluster.wait_count(cluster.nodes, len(committed))
        for node in cluster.nodes:
            assert _values(node) == committed, node.name

        last = list(range(60, 70))
        _propose(third, last)
        committed += last
        cluster.wait_count(cluster.nodes, len(committed))
        for node in cluster.nodes:
            assert _values(node) == committed, node.name
