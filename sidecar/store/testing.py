"""`EtcdCluster`: real etcd members on ephemeral loopback ports, for tests and the bench.

Shipped in the package (as `temporalio.testing` is) because tests/store and
`bench/checkpoint_bench.py` both start etcd. Each member has its data directory and its
log (`<name>.log`) under `base_dir`. Members run with a raised `--max-txn-ops` (etcd's
default of 128 operations per Txn cannot carry a 1000-event checkpoint) and short Raft
timers (heartbeat 50 ms, election 500 ms) so that failover tests stay quick; `start`
waits, with a deadline, until every member answers Maintenance Status with a leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from sidecar.api.etcd.v3 import kv_pb2 as pb
from sidecar.store.base import StoreError, StoreUnavailableError
from sidecar.store.etcd import EtcdConfig, EtcdStore, EtcdTls

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "EtcdServerTls",
    "etcd_binary",
    "fill_to_quota",
    "free_ports",
    "reclaim_space",
]

DEFAULT_MAX_TXN_OPS = 4096


def etcd_binary() -> str | None:
    """`$ACTORFLOW_ETCD`, else `etcd` on PATH (Debian's etcd-server), else None."""
    return os.environ.get("ACTORFLOW_ETCD") or shutil.which("etcd")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True, slots=True)
class EtcdServerTls:
    """Server side of client TLS: members serve https with this certificate and, with
    `client_ca`, demand client certificates signed by it (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


@dataclass(eq=False)
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class EtcdCluster:
    """`size` members forming one cluster. Use `async with EtcdCluster(...) as c:`."""

    def __init__(
        self,
        base_dir: Path,
        size: int = 1,
        *,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        tls: EtcdServerTls | None = None,
        client_tls: EtcdTls | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        found = binary or etcd_binary()
        if found is None:
            raise FileNotFoundError("no etcd binary: install etcd-server or set ACTORFLOW_ETCD")
        self.binary = found
        self.base_dir = base_dir
        self.max_txn_ops = max_txn_ops
        if (tls is None) != (client_tls is None):
            raise ValueError("give both the server TLS files and the client TLS settings")
        self.tls = tls
        self.client_tls = client_tls
        self.extra_args = tuple(extra_args)  # more etcd flags for every member
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(f"etcd{i}", ports[2 * i], ports[2 * i + 1], base_dir / f"etcd{i}")
            for i in range(size)
        ]

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.endpoint for m in self.members)

    def store_config(self, **overrides: Any) -> EtcdConfig:
        """An `EtcdConfig` for these members with the limits they were started with."""
        values: dict[str, Any] = {
            "endpoints": self.endpoints,
            "tls": self.client_tls,
            "max_txn_ops": self.max_txn_ops,
        }
        values.update(overrides)
        return EtcdConfig(**values)

    def _args(self, member: EtcdMember) -> list[str]:
        scheme = "https" if self.tls else "http"
        client_url = f"{scheme}://{member.endpoint}"
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        args = [
            self.binary,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=actorflow-{os.getpid()}-{id(self)}",
            f"--max-txn-ops={self.max_txn_ops}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            *self.extra_args,
        ]
        if self.tls:
            args += [f"--cert-file={self.tls.cert_file}", f"--key-file={self.tls.key_file}"]
            if self.tls.client_ca:
                args += [f"--trusted-ca-file={self.tls.client_ca}", "--client-cert-auth"]
        return args

    def start_member(self, member: EtcdMember) -> None:
        member.data_dir.mkdir(parents=True, exist_ok=True)
        with member.log_path.open("ab") as log:
            member.proc = subprocess.Popen(
                self._args(member),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self, timeout_s: float = 30.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            self.start_member(member)
        try:
            await self.wait_ready(self.members, timeout_s)
        except BaseException:
            self.stop()
            raise

    async def wait_ready(self, members: list[EtcdMember], timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(self._wait_member(m) for m in members))

    async def _wait_member(self, member: EtcdMember) -> None:
        """Poll Maintenance Status until the member answers and knows a leader."""
        config = self.store_config(endpoints=(member.endpoint,), timeout_s=0.5)
        store = await EtcdStore.open(config)
        try:
            while True:
                if not member.alive:
                    log = member.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"etcd member {member.name} exited:\n{log}")
                with contextlib.suppress(StoreError):
                    if (await store.status()).leader:
                        return
                # Poll interval while waiting for readiness (a deadline bounds it).
                await asyncio.sleep(0.05)
        finally:
            await store.close()

    def stop(self) -> None:
        for member in self.members:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.terminate()
        for member in self.members:
            if member.proc is not None:
                try:
                    member.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    member.kill()

    async def __aenter__(self) -> EtcdCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def fill_to_quota(store: EtcdStore, max_writes: int = 1000) -> StoreUnavailableError:
    """Write one key of 512 KiB again and again (only its history grows) until etcd
    refuses for lack of space; the store's error. RuntimeError if it never refuses."""
    for _ in range(max_writes):
        try:
            await store.transact({"test/filler": b"x" * 2**19})
        except StoreUnavailableError as exc:
            return exc
    raise RuntimeError(f"etcd took {max_writes} writes of 512 KiB without running out of space")


async def reclaim_space(endpoints: Sequence[str], timeout_s: float = 30.0) -> None:
    """What an operator does when etcd reports "database space exceeded" (`etcdctl
    compaction --physical`, `defrag`, `alarm disarm`), on plaintext members: compact the
    history up to the current revision, defragment every member until its file is as
    small as the first one's, disarm every member's NOSPACE alarm. The requests are
    written by hand (the store's proto has no Maintenance messages beyond Status):
    CompactionRequest{revision, physical}, DefragmentRequest{}, AlarmRequest{action=
    DEACTIVATE, memberID, alarm=NOSPACE}.

    The compaction is physical on the member that takes it before it answers; the
    others apply it a little later. A member defragmented before then keeps its file
    over the quota and raises the alarm again at the next write it applies: so each is
    defragmented again, within `timeout_s`, until its file is no larger than about
    what the first member's shrank to."""
    members = [(endpoint, (await _status(endpoint)).header) for endpoint in endpoints]
    revision = max(header.revision for _, header in members)
    deadline = asyncio.get_running_loop().time() + timeout_s
    bound: int | None = None
    for i, (endpoint, _) in enumerate(members):
        async with grpc.aio.insecure_channel(endpoint) as channel:
            if i == 0:  # compaction is replicated: once, on any member
                compact = b"\x08" + _varint(revision) + b"\x10\x01"
                await _raw_call(channel, "/etcdserverpb.KV/Compact", compact)
            while True:
                await _raw_call(channel, "/etcdserverpb.Maintenance/Defragment", b"")
                size = (await _status(endpoint)).dbSize
                if bound is None:
                    bound = 2 * size + 2**20
                if size <= bound:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"etcd member {endpoint} still holds {size} bytes")
                await asyncio.sleep(0.1)  # its compaction is on its way: bounded by deadline
    for endpoint, header in members:
        async with grpc.aio.insecure_channel(endpoint) as channel:
            alarm = b"\x08\x02\x10" + _varint(header.member_id) + b"\x18\x01"
            await _raw_call(channel, "/etcdserverpb.Maintenance/Alarm", alarm)


async def _status(endpoint: str) -> pb.StatusResponse:
    store = await EtcdStore.open(EtcdConfig(endpoints=(endpoint,)))
    try:
        return await store.status()
    finally:
        await store.close()


async def _raw_call(channel: grpc.aio.Channel, path: str, request: bytes) -> bytes:
    method = channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
    return bytes(await method(request, timeout=30))
