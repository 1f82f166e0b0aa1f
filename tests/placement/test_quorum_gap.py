"""The placement leader in a quorum gap: still the leader of its term, but no follower
answered within the quorum window. Its orders wait and its hosts keep their streams;
they go out once the quorum is back. A change of role or term still ends the leadership."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from placement.api.v1 import placement_pb2 as pb
from placement.config import PlacementConfig
from placement.dissemination import Operation, Send
from placement.membership import HostRecord
from placement.server import PlacementNode
from placement.streams import HostStream
from raftkit.node import Fence, RaftStatus, Role

TERM = 5


@dataclass
class FakeRaft:
    current: RaftStatus

    def status(self) -> RaftStatus:
        return self.current

    def fence(self, term: int) -> Fence:
        s = self.current
        if s.role is not Role.LEADER or s.term != term:
            return Fence.LOST
        return Fence.HOLDS if s.has_quorum else Fence.GAP


def _leader(tmp_path: Path) -> tuple[PlacementNode, FakeRaft, list[HostStream]]:
    config = PlacementConfig(
        node_id="p0",
        api_address="127.0.0.1:1",
        raft_address="127.0.0.1:2",
        peers={"127.0.0.1:3": "127.0.0.1:4", "127.0.0.1:5": "127.0.0.1:6"},
        data_dir=tmp_path,
        allow_insecure_raft=True,
    )
    node = PlacementNode(config)
    raft = FakeRaft(RaftStatus("127.0.0.1:2", Role.LEADER, TERM, "127.0.0.1:2", True, 1, 1, True))
    node.raft = raft  # type: ignore[assignment]
    node._term, node._leading = TERM, True
    streams = [
        HostStream(HostRecord(f"h{i}", f"h{i}:1", "app", "default", ("t",), 1)) for i in range(2)
    ]
    for stream in streams:
        node._streams[stream.name] = stream
    return node, raft, streams


def _send(node: PlacementNode, version: int) -> None:
    node._send(Send(Operation.LOCK, version, TERM, ("h0", "h1")))


async def test_orders_wait_out_a_quorum_gap_with_the_streams_kept(tmp_path: Path) -> None:
    node, raft, streams = _leader(tmp_path)
    raft.current = replace(raft.current, has_quorum=False)
    _send(node, 7)
    _send(node, 8)
    node._tick(0.0)
    assert all(s.outbox.empty() and s.closing is None for s in streams)

    raft.current = replace(raft.current, has_quorum=True)
    _send(node, 9)  # the held ones go first
    for stream in streams:
        sent = [stream.outbox.get_nowait() for _ in range(stream.outbox.qsize())]
        assert [pb.PlacementOrder.FromString(order).version for order in sent] == [7, 8, 9]


async def test_the_tick_sends_what_waited_once_the_quorum_is_back(tmp_path: Path) -> None:
    node, raft, streams = _leader(tmp_path)
    raft.current = replace(raft.current, has_quorum=False)
    _send(node, 7)
    raft.current = replace(raft.current, has_quorum=True)
    node._tick(0.0)
    assert all(s.outbox.qsize() == 1 for s in streams)


async def test_a_new_term_during_the_gap_ends_the_leadership(tmp_path: Path) -> None:
    node, raft, streams = _leader(tmp_path)
    raft.current = replace(raft.current, has_quorum=False)
    _send(node, 7)
    raft.current = replace(raft.current, role=Role.FOLLOWER, term=TERM + 1, has_quorum=False)
    node._tick(0.0)
    assert node._term == 0 and not node._held
    assert all(s.outbox.empty() for s in streams)
    closed = (grpc.StatusCode.UNAVAILABLE, "not the leader any more")
    assert all(s.closing == closed for s in streams)
