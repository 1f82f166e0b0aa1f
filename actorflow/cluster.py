"""`Cluster`: the processes of one `actorflow up`, under its data directory.

It lays out the directory (lock, secret, certificates, ports), starts the control plane
and the sidecars, writes cluster.json, answers `actorflow scale` on the control socket
and stops everything in order. The command around it (signals, output) is in `up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import socket
import sys
from typing import Any

import aiohttp

from actorflow.certs import CertPaths, write_cluster_certs
from actorflow.procs import Proc, StartError
from actorflow.up_options import (
    CONTROL_SOCKET,
    ETCD_MAX_TXN_OPS,
    LOCK_FILE,
    PEER_PORT_OFFSET,
    TLS_ENV_PREFIX,
    DataDirBusyError,
    SidecarSpec,
    UpOptions,
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    def __init__(self, opts: UpOptions) -> None:
        self.opts = opts
        self.dir = opts.data_dir.resolve()
        self.logs = self.dir / "logs"
        self.procs: dict[str, Proc] = {}
        self.sidecars: dict[str, SidecarSpec] = {}
        self.ports: dict[str, list[int]] = {}
        self.secret = ""
        self.tls: CertPaths | None = None
        self.store_url = ""
        self.etcd_endpoints: list[str] = []
        self._next_index = 0
        self._lock_fd: int | None = None

    # ---- layout

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_dir()
        self.logs.mkdir(exist_ok=True)
        secret_path = self.dir / "secret"
        if not secret_path.exists():
            secret_path.write_text(secrets.token_hex(24))
            secret_path.chmod(0o600)
        self.secret = secret_path.read_text().strip()
        if self.opts.tls:
            tls_dir = self.dir / "tls"
            mine = CertPaths.in_dir(tls_dir)
            self.tls = mine if mine.key.exists() else write_cluster_certs(tls_dir)
        ports_path = self.dir / "ports.json"
        if ports_path.exists():
            self.ports = json.loads(ports_path.read_text())
        else:
            free = _free_ports(18)
            self.ports = {
                "placement_api": free[0:3], "placement_raft": free[3:6],
                "reminders_api": free[6:9], "reminders_raft": free[9:12],
                "etcd_client": free[12:15], "etcd_peer": free[15:18],
            }  # fmt: skip
            ports_path.write_text(json.dumps(self.ports, indent=2))

    def _lock_dir(self) -> None:
        """Hold DIR/up.lock for as long as this process lives (the kernel lets go when
        it ends, however it ends). A second `up` on the same directory would start Raft
        nodes on the journals the first one's nodes are writing, and remove its
        cluster.json on the way out: it stops here instead, before starting anything."""
        path = self.dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusyError(
                f"{self.dir} is in use by another actorflow up (pid {holder}): stop it "
                "first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _addr(self, kind: str) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports[kind]]

    def _env(self) -> dict[str, str]:
        """The children's environment. TLS is `--tls`'s to decide: settings inherited from
        the shell would turn it on for some processes and not others (a sidecar without
        a peer port would refuse to start), so they are dropped."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(TLS_ENV_PREFIX)}
        tls = self.tls.env() if self.tls is not None else {}
        return {
            **inherited, "ACTORFLOW_RAFT_PASSWORD": self.secret, "PYTHONUNBUFFERED": "1", **tls
        }  # fmt: skip

    # ---- control plane

    def _raft_args(self, module: str, prefix: str, i: int) -> list[str]:
        apis, rafts = self._addr(f"{module}_api"), self._addr(f"{module}_raft")
        peers = [f"--peer={rafts[j]}={apis[j]}" for j in range(3) if j != i]
        return [
            sys.executable, "-m", module, f"--node-id={prefix}{i}",
            f"--api-address={apis[i]}", f"--raft-address={rafts[i]}",
            f"--data-dir={self.dir / module / f'{prefix}{i}'}", *peers,
        ]  # fmt: skip

    def _etcd_args(self, i: int) -> list[str]:
        clients, peers = self._addr("etcd_client"), self._addr("etcd_peer")
        initial = ",".join(f"e{j}=http://{peers[j]}" for j in range(3))
        return [
            "etcd", f"--name=e{i}", f"--data-dir={self.dir / 'etcd' / f'e{i}'}",
            f"--listen-client-urls=http://{clients[i]}",
            f"--advertise-client-urls=http://{clients[i]}",
            f"--listen-peer-urls=http://{peers[i]}",
            f"--initial-advertise-peer-urls=http://{peers[i]}",
            f"--initial-cluster={initial}", "--initial-cluster-state=new",
            "--initial-cluster-token=actorflow-up", f"--max-txn-ops={ETCD_MAX_TXN_OPS}",
            f"--quota-backend-bytes={self.opts.etcd_quota_bytes}",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={self.opts.etcd_compaction_retention}",
        ]  # fmt: skip

    async def _start(self, name: str, argv: list[str], ready_line: bool) -> Proc:
        proc = Proc(name, argv, self._env(), self.logs / f"{name}.log")
        self.procs[name] = proc
        await proc.start(ready_line=ready_line, timeout_s=self.opts.ready_timeout_s)
        return proc

    async def start_control_plane(self) -> None:
        starts = []
        if self.opts.store == "etcd" and not self.opts.etcd_endpoints:
            starts += [self._start(f"etcd-{i}", self._etcd_args(i), False) for i in range(3)]
            self.etcd_endpoints = self._addr("etcd_client")
        else:
            self.etcd_endpoints = list(self.opts.etcd_endpoints)
        starts += [
            self._start(f"placement-{i}", self._raft_args("placement", "p", i), True)
            for i in range(3)
        ]
        starts += [
            self._start(f"reminders-{i}", self._raft_args("reminders", "r", i), True)
            for i in range(3)
        ]
        await asyncio.gather(*starts)
        if self.opts.store == "etcd":
            self.store_url = "etcd://" + ",".join(self.etcd_endpoints)
            if not self.opts.etcd_endpoints:  # ours: started with a raised --max-txn-ops
                self.store_url += f"?max_txn_ops={ETCD_MAX_TXN_OPS}"
        else:
            self.store_url = f"sqlite://{self.dir / 'state.db'}"

    # ---- sidecars

    def _sidecar_spec(self, app_id: str) -> SidecarSpec:
        i = self._next_index
        self._next_index += 1
        return SidecarSpec(
            i,
            app_id,
            f"127.0.0.1:{self.opts.base_grpc_port + i}",
            f"127.0.0.1:{self.opts.base_http_port + i}",
            f"127.0.0.1:{self._base_peer_port() + i}" if self.opts.tls else None,
        )

    def _base_peer_port(self) -> int:
        if self.opts.base_peer_port is not None:
            return self.opts.base_peer_port
        return self.opts.base_grpc_port + PEER_PORT_OFFSET

    async def add_sidecar(self, app_id: str) -> SidecarSpec:
        spec = self._sidecar_spec(app_id)
        argv = [
            sys.executable, "-m", "sidecar", f"--app-id={app_id}",
            f"--grpc-address={spec.grpc}", f"--http-address={spec.http}",
            "--placement=" + ",".join(self._addr("placement_api")),
            "--reminders=" + ",".join(self._addr("reminders_api")),
            f"--store={self.store_url}",
        ]  # fmt: skip
        if spec.peer is not None:
            argv.append(f"--peer-address={spec.peer}")
        if self.opts.test_actors:
            argv += ["--test-actors", f"--turn-log={self.logs / f'{spec.name}.turns'}"]
        await self._start(spec.name, argv, True)
        self.sidecars[spec.name] = spec
        await self.wait_healthy([spec])
        return spec

    async def remove_sidecar(self, name: str) -> None:
        spec = self.sidecars.pop(name)
        await self.procs.pop(spec.name).stop()

    async def wait_healthy(self, specs: list[SidecarSpec]) -> None:
        last = "no answer yet"
        current = specs[0] if specs else None
        try:
            async with aiohttp.ClientSession() as http, asyncio.timeout(self.opts.ready_timeout_s):
                for spec in specs:
                    current = spec
                    while True:
                        try:
                            async with http.get(f"http://{spec.http}/v1.0/healthz") as resp:
                                if resp.status == 204:
                                    break
                                last = f"{resp.status} {await resp.text()}"
                        except aiohttp.ClientError as exc:
                            last = f"{type(exc).__name__}: {exc}"
                        proc = self.procs[spec.name]
                        if not proc.alive:
                            raise RuntimeError(f"{spec.name} exited: {proc.tail()}")
                        await asyncio.sleep(0.1)  # polling another process's health, bounded
        except TimeoutError:
            assert current is not None
            raise RuntimeError(
                f"{current.name} not healthy in {self.opts.ready_timeout_s}s "
                f"(last healthz: {last}):\n{self.procs[current.name].tail()}"
            ) from None

    def write_cluster_json(self) -> None:
        store: dict[str, Any] = {"kind": self.opts.store, "url": self.store_url}
        if self.opts.store == "etcd":
            store["endpoints"] = self.etcd_endpoints
        data = {
            "sidecars": [
                {"name": s.name, "app_id": s.app_id, "grpc": s.grpc, "http": f"http://{s.http}",
                 "pid": self.procs[s.name].pid, **({"peer": s.peer} if s.peer else {})}
                for s in self.sidecars.values()
            ],
            "placement": self._addr("placement_api"),
            "reminders": self._addr("reminders_api"),
            "store": store,
            "pids": {name: p.pid for name, p in self.procs.items()},
            "control": str(self.dir / CONTROL_SOCKET),
        }  # fmt: skip
        if self.tls is not None:
            data["tls"] = self.tls.as_json()
        tmp = self.dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.dir / "cluster.json")

    async def stop(self) -> None:
        order = [
            [p for n, p in self.procs.items() if n.startswith("sidecar-")],
            [p for n, p in self.procs.items() if n.startswith("reminders-")],
            [p for n, p in self.procs.items() if n.startswith("placement-")],
            [p for n, p in self.procs.items() if n.startswith("etcd-")],
        ]
        for group in order:
            await asyncio.gather(*(p.stop() for p in group))
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "cluster.json").unlink()

    # ---- control socket

    async def handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = json.loads(await reader.readline())
            if request.get("op") == "add":
                spec = await self.add_sidecar(str(request.get("app_id") or self.default_app()))
                reply: dict[str, Any] = {"ok": True, "added": spec.name}
            elif request.get("op") == "remove":
                name = str(request.get("name") or next(reversed(self.sidecars), ""))
                if name not in self.sidecars:
                    reply = {"ok": False, "error": f"no sidecar named {name!r}"}
                else:
                    await self.remove_sidecar(name)
                    reply = {"ok": True, "removed": name}
            else:
                reply = {"ok": False, "error": f"unknown op {request.get('op')!r}"}
            self.write_cluster_json()
        except StartError as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:
            reply = {"ok": False, "error": repr(exc)}
        writer.write((json.dumps(reply) + "\n").encode())
        await writer.drain()
        writer.close()

    def default_app(self) -> str:
        return self.opts.app_ids[0] if self.opts.app_ids else "app"
