"""RaftNode in-process: three nodes in one process (each with its own pysyncobj tick
thread) on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
import threading
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.transport import TCPTransport
from raftkit_harness import EXPLOITED, exploited, free_ports

from raftkit import (
    Command,
    CommandRejectedError,
    CommandTooLargeError,
    Entry,
    Fence,
    LeadershipLostError,
    NotLeaderError,
    RaftConfig,
    RaftError,
    RaftNode,
    RaftStatus,
    RaftTimeoutError,
    Role,
    Security,
    decode_snapshot,
    encode_snapshot,
)
from raftkit.config import MAX_COMMAND_BYTES

pytestmark = pytest.mark.timeout(60)

SECRET = "raftkit-test-secret"


class Recorder:
    """Appends values; on the leader, records any entry applied before it was synced."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.node: RaftNode | None = None
        self.unsynced_leader_applies: list[int] = []

    def apply(self, command: Command, entry: Entry) -> object:
        if command.kind == "boom":
            raise ValueError("refused on purpose")
        node = self.node
        journal = node.journal if node is not None else None
        leading = node is not None and node.is_leader
        if leading and journal is not None and entry.index > journal.synced_index:
            self.unsynced_leader_applies.append(entry.index)
        self.values.append(command.body)
        return entry.index

    def snapshot(self) -> bytes:
        return encode_snapshot(self.values)

    def restore(self, data: bytes) -> None:
        self.values = list(decode_snapshot(data))


class InProcCluster:
    def __init__(
        self,
        base: Path,
        size: int = 3,
        per_node: list[dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> None:
        """`overrides` go to every node's RaftConfig, `per_node[i]` to node i's alone."""
        addresses = [f"127.0.0.1:{p}" for p in free_ports(size)]
        self.machines = [Recorder() for _ in addresses]
        self.nodes = []
        for i, address in enumerate(addresses):
            config = RaftConfig(
                self_address=address,
                partners=tuple(a for a in addresses if a != address),
                data_dir=base / f"node{i}",
                password=SECRET,
                security=Security.HMAC,
                **{**overrides, **(per_node[i] if per_node else {})},
            )
            node = RaftNode(config, self.machines[i])
            self.machines[i].node = node
            self.nodes.append(node)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    async def leader(self, timeout: float = 10.0) -> RaftNode:
        statuses = await asyncio.gather(
            *(n.wait_for(lambda s: s.leader is not None, timeout=timeout) for n in self.nodes)
        )
        address = statuses[0].leader
        leader = next(n for n in self.nodes if n.config.self_address == address)
        await leader.wait_for(lambda s: s.role is Role.LEADER and s.has_quorum, timeout=timeout)
        return leader

    def followers(self, leader: RaftNode) -> list[RaftNode]:
        return [n for n in self.nodes if n is not leader]

    async def converge(self, timeout: float = 10.0) -> None:
        target = max(n.commit_index for n in self.nodes)
        await asyncio.gather(
            *(n.wait_for(lambda s: s.last_applied >= target, timeout=timeout) for n in self.nodes)
        )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcCluster]:
    c = InProcCluster(tmp_path)
    c.start()
    try:
        yield c
    finally:
        c.close()


async def test_propose_returns_apply_result_and_replicas_agree(cluster: InProcCluster) -> None:
    leader = await cluster.leader()
    assert all(n.healthy for n in cluster.nodes)
    seen: list[RaftStatus] = []
    unsubscribe = cluster.followers(leader)[0].add_listener(seen.append)
    results = [await leader.propose(Command("put", {"n": i}), timeout=5) for i in range(20)]
    indices = [int(r) for r in results if isinstance(r, int)]
    assert indices == sorted(indices) and len(set(indices)) == 20
    await cluster.converge()
    unsubscribe()
    assert seen and max(s.last_applied for s in seen) >= indices[-1]
    expected = [{"n": i} for i in range(20)]
    assert all(m.values == expected for m in cluster.machines)


async def test_large_commands_reach_every_replica_intact(cluster: InProcCluster) -> None:
    """pysyncobj 0.3.17 chunks entries of appendEntriesBatchSizeBytes or more and can
    hand followers a truncated entry; raftkit keeps every accepted command below that."""
    leader = await cluster.leader()
    # Sizes around a multiple of pysyncobj's default 64 KiB chunk: the pickled entry is a
    # few dozen bytes longer than the command, which is where its last-chunk test fails.
    sizes = [2 * 65536 - d for d in range(160, -40, -1)] + [300_000, 2_000_000]
    blobs = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    for blob in blobs:
        await leader.propose(Command("put", {"blob": blob}), timeout=10)
    await cluster.converge()
    for machine in cluster.machines:
        assert [v["blob"] for v in machine.values] == blobs
    with pytest.raises(CommandTooLargeError):
        await leader.propose(Command("put", {"blob": b"x" * (MAX_COMMAND_BYTES + 1)}), timeout=5)


async def test_follower_refuses_with_leader_hint_or_forwards(cluster: InProcCluster) -> None:
    leader = await cluster.leader()
    follower = cluster.followers(leader)[0]
    with pytest.raises(NotLeaderError) as info:
        await follower.propose(Command("put", {"n": 1}), timeout=5)
    assert info.value.leader_hint == leader.config.self_address
    assert await follower.propose(Command("put", {"n": 2}), timeout=5, leader_only=False)
    await cluster.converge()
    assert all(m.values == [{"n": 2}] for m in cluster.machines)


async def test_term_fencing(cluster: InProcCluster) -> None:
    leader = await cluster.leader()
    term = leader.term
    assert leader.leader_term() == term
    assert leader.fence(term) is Fence.HOLDS and leader.fence(term + 1) is Fence.LOST
    leader.ensure_leader(term)
    with pytest.raises(LeadershipLostError):
        leader.ensure_leader(term + 1)
    follower = cluster.followers(leader)[0]
    assert follower.leader_term() is None
    assert follower.fence(term) is Fence.LOST
    with pytest.raises(LeadershipLostError):
        follower.ensure_leader(term)
    # A command fenced with another term reaches the log but no replica applies it.
    with pytest.raises(LeadershipLostError):
        await leader.propose(Command("put", {"n": 0}, fence_term=term - 1), timeout=5)
    await leader.propose(Command("put", {"n": 1}), timeout=5)
    await cluster.converge()
    assert all(m.values == [{"n": 1}] for m in cluster.machines)
    with pytest.raises(RaftTimeoutError):
        await follower.wait_for(lambda s: s.role is Role.LEADER, timeout=0.2)


async def test_refused_command_is_rejected_alike(cluster: InProcCluster) -> None:
    leader = await cluster.leader()
    with pytest.raises(CommandRejectedError, match="refused on purpose"):
        await leader.propose(Command("boom"), timeout=5)
    await leader.propose(Command("put", {"n": 1}), timeout=5)
    await cluster.converge()
    assert all(m.values == [{"n": 1}] for m in cluster.machines)


async def test_group_commit_and_no_ack_before_sync(
    cluster: InProcCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    early_acks: list[tuple[int, int]] = []
    original_send = TCPTransport.send

    def spying_send(self: Any, node: Any, message: Any) -> Any:
        journal = getattr(self, "_journal", None)
        if (
            journal is not None
            and isinstance(message, dict)
            and message.get("type") == "next_node_idx"
            and message.get("success")
            and message["next_node_idx"] - 1 > journal.synced_index
        ):
            early_acks.append((message["next_node_idx"] - 1, journal.synced_index))
        return original_send(self, node, message)

    monkeypatch.setattr(TCPTransport, "send", spying_send)
    leader = await cluster.leader()
    syncs_before = {id(n): n.journal.sync_count for n in cluster.nodes if n.journal}
    count = 300
    await asyncio.gather(
        *(leader.propose(Command("put", {"n": i}), timeout=20) for i in range(count))
    )
    await cluster.converge()
    assert early_acks == []
    assert all(not m.unsynced_leader_applies for m in cluster.machines)
    for node in cluster.nodes:
        assert node.journal is not None
        syncs = node.journal.sync_count - syncs_before[id(node)]
        assert 0 < syncs < count, (node.config.self_address, syncs)
    assert all(len(m.values) == count for m in cluster.machines)


async def test_lost_quorum_times_out_then_steps_down(cluster: InProcCluster) -> None:
    leader = await cluster.leader()
    for follower in cluster.followers(leader):
        follower.close()
    await leader.wait_for(lambda s: not s.has_quorum, timeout=5)
    assert leader.leader_term() is None
    with pytest.raises((RaftTimeoutError, NotLeaderError)):
        await leader.propose(Command("put", {"n": 1}), timeout=0.3)
    # leaderFallbackTimeout is 1 s here, not pysyncobj's 30 s.
    await leader.wait_for(lambda s: s.role is not Role.LEADER, timeout=5)


class _Exploit:
    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exploited, (self.name,))


def _send_raw_pickle(address: str, name: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    data = zlib.compress(pickle.dumps(_Exploit(name)), 3)
    sock.sendall(struct.pack("i", len(data)) + data)
    return sock


def _wait_closed_by_peer(sock: socket.socket) -> None:
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


@pytest.mark.parametrize("secured", [True, False])
async def test_unauthenticated_pickle_never_reaches_the_unpickler(
    tmp_path: Path, secured: bool
) -> None:
    name = f"{tmp_path.name}-{secured}"
    (address,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    config = RaftConfig(
        self_address=address,
        partners=(),
        data_dir=tmp_path / "node",
        password=SECRET if secured else None,
        security=Security.HMAC,
        allow_insecure=not secured,
    )
    node = RaftNode(config, Recorder())
    node.start()
    try:
        sock = await asyncio.to_thread(_send_raw_pickle, address, name)
        if secured:
            await asyncio.to_thread(_wait_closed_by_peer, sock)
            assert name not in EXPLOITED
            await node.wait_for(lambda s: s.role is Role.LEADER, timeout=5)
            assert await node.propose(Command("put", {"n": 1}), timeout=5)
        else:
            # Control: without a secret pysyncobj runs whatever it is sent.
            event = EXPLOITED.setdefault(name, threading.Event())
            assert await asyncio.to_thread(event.wait, 5)
        sock.close()
    finally:
        node.close()


async def test_a_journal_that_fails_is_told_from_the_tick_thread(tmp_path: Path) -> None:
    """`on_journal_failure` is how a server process learns that its node will refuse all
    work from now on (the servers exit there: `exit_on_journal_failure`)."""
    (address,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    config = RaftConfig(
        self_address=address, partners=(), data_dir=tmp_path / "node", password=SECRET,
        security=Security.HMAC,
    )  # fmt: skip
    disk_full = threading.Event()
    told: list[BaseException] = []
    failed = threading.Event()

    def sync(fd: int) -> None:
        if disk_full.is_set():
            raise OSError(28, "No space left on device")
        os.fdatasync(fd)

    def on_failure(exc: BaseException) -> None:
        told.append(exc)
        failed.set()

    node = RaftNode(config, Recorder(), sync_fn=sync, on_journal_failure=on_failure)
    node.start()
    try:
        await node.wait_for(lambda s: s.role is Role.LEADER, timeout=5)
        assert await node.propose(Command("put", {"n": 1}), timeout=5)
        disk_full.set()
        with contextlib.suppress(Exception):  # it cannot be made durable now
            await node.propose(Command("put", {"n": 2}), timeout=2)
        assert await asyncio.to_thread(failed.wait, 10)
        assert len(told) == 1 and isinstance(told[0], OSError)
        assert not node.healthy
    finally:
        node.close()


async def test_bind_failure_is_a_raft_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        config = RaftConfig(
            self_address=address,
            partners=(),
            data_dir=tmp_path,
            password=SECRET,
            security=Security.HMAC,
            bind_retries=2,
            bind_retry_s=0.05,
        )
        node = RaftNode(config, Recorder())
        with pytest.raises(RaftError, match="cannot bind"):
            node.start()


async def test_after_a_quiet_spell_the_first_election_after_the_leader_dies_succeeds(
    tmp_path: Path,
) -> None:
    """Two followers never talk while their leader lives. pysyncobj closes a connection
    that read nothing for its connection timeout, and checks that when it sends: the
    first vote request after the leader died closed the followers' connection instead of
    arriving, so both stood for the same term and a second round was needed. Keepalives
    (raftkit.transport) keep that connection read from. Each node's election timeout is
    apart from the others' by more than half a second, so whichever leads, one follower
    stands first and the other gets its request long before its own timeout: no split
    vote by chance."""
    timeouts = [(0.35, 0.4), (0.95, 1.0), (1.55, 1.6)]
    cluster = InProcCluster(
        tmp_path,
        per_node=[
            {"election_timeout_min_s": low, "election_timeout_max_s": high}
            for low, high in timeouts
        ],
        connection_timeout_s=1.65,
    )
    cluster.start()
    try:
        leader = await cluster.leader()
        term = leader.term
        await asyncio.sleep(2.5)  # a quiet spell, longer than the connection timeout
        leader.close()
        followers = cluster.followers(leader)
        statuses = await asyncio.gather(
            *(
                f.wait_for(
                    lambda s: s.leader is not None and s.leader != leader.config.self_address,
                    timeout=10,
                )
                for f in followers
            )
        )
        assert {s.term for s in statuses} == {term + 1}
    finally:
        for node in cluster.nodes:
            node.close()
