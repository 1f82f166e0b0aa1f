"""What a `RaftNode` reports (`Role`, `Fence`, `RaftStatus`) and how it is read out of
pysyncobj's fields.

Kept apart from `raftkit.node` so that these values sit together with the way they are
read from pysyncobj (from any thread, each a plain read of its fields), which the node's
properties, its fencing and its status feed share. `raftkit.node` re-exports the
public names.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from raftkit.replicated_log import ReplicatedLog

__all__ = ["Fence", "RaftStatus", "Role", "heard_from_majority", "leader_of", "read_status"]


class Role(enum.Enum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


class Fence(enum.Enum):
    """Where leader-only actions on behalf of a term stand (`RaftNode.fence`)."""

    HOLDS = "holds"  # this node leads the term and heard from a majority recently: act
    GAP = "gap"  # it still leads the term, without a recent quorum: wait, keep the rest
    LOST = "lost"  # another role or term: the term's leadership is over here


@dataclass(frozen=True, slots=True)
class RaftStatus:
    self_address: str
    role: Role
    term: int
    leader: str | None
    has_quorum: bool
    commit_index: int
    last_applied: int
    ready: bool


def read_status(log: ReplicatedLog, self_address: str, quorum_window_s: float) -> RaftStatus:
    return RaftStatus(
        self_address=self_address,
        role=Role(log._SyncObj__raftState),
        term=log.raftCurrentTerm,
        leader=leader_of(log),
        has_quorum=heard_from_majority(log, quorum_window_s),
        commit_index=log.raftCommitIndex,
        last_applied=log.raftLastApplied,
        ready=log.isReady(),
    )


def heard_from_majority(log: ReplicatedLog, window_s: float) -> bool:
    """This node leads and heard an answer from a majority (itself included) within
    the last `window_s` seconds."""
    if not log._isLeader():
        return False
    partners = log.otherNodes
    deadline = time.monotonic() - window_s
    heard = dict(log._SyncObj__lastResponseTime)  # copy: the tick thread mutates it
    fresh = sum(1 for node in partners if heard.get(node, float("-inf")) > deadline)
    return (fresh + 1) * 2 > len(partners) + 1


def leader_of(log: ReplicatedLog) -> str | None:
    leader = log._getLeader()
    if leader is None:
        return None
    return str(getattr(leader, "address", None) or leader.id)
