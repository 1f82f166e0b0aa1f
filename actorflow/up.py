"""`actorflow up`: a whole cluster on loopback, as separate processes, in the foreground.

3 placement nodes, 3 reminders nodes, the state store (one SQLite file shared by the
sidecars, or a 3-member etcd cluster with `--store etcd` unless `--etcd-endpoints` names
one), and N sidecars. Everything lives under `--data-dir` (default `./.actorflow`):

    DIR/cluster.json     written once every sidecar answers healthz (DESIGN.md 3.3)
    DIR/ports.json       control-plane ports chosen on first start, reused on restart
    DIR/secret           the Raft shared secret, made on first start (mode 0600)
    DIR/placement/pN  DIR/reminders/rN  DIR/etcd/eN  DIR/state.db
    DIR/logs/*.log       one log per process
    DIR/control.sock     `actorflow scale` talks to the running `up` through it
    DIR/up.lock          locked by the running `up`: a second one on DIR refuses to start

A restart with the same directory recovers every workflow and reminder. SIGINT or
SIGTERM stops the sidecars first (they leave placement and drain their actors), then
reminders, placement and etcd. A process that dies is reported and not restarted.

Scaling while it runs: `actorflow scale --add [--app-id ID]` starts one more sidecar,
`actorflow scale --remove NAME` stops one (graceful: it leaves placement, its actors
move). Both update cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from actorflow.certs import CertPaths, write_cluster_certs
from actorflow.procs import Proc, StartError

CONTROL_SOCKET = "control.sock"
LOCK_FILE = "up.lock"  # held by the running `up` (see `Cluster._lock_dir`)
ETCD_MAX_TXN_OPS = 10_000
# The etcd members `up` starts: their space quota, and how much history they keep. etcd
# keeps every revision of every key until compacted; a checkpoint per turn makes many,
# and a database that reaches its quota refuses every write (the NOSPACE alarm) until an
# operator compacts, defragments and disarms it.
ETCD_QUOTA_BYTES = 8 * 1024**3
ETCD_COMPACTION_RETENTION = "5m"
TLS_ENV_PREFIX = "ACTORFLOW_TLS_"
PEER_PORT_OFFSET = 1000  # with --tls: a sidecar's peer port, from its app port


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SidecarSpec:
    index: int
    app_id: str
    grpc: str
    http: str
    peer: str | None = None  # the peer API's own port (with --tls)

    @property
    def name(self) -> str:
        return f"sidecar-{self.index}"


@dataclass
class UpOptions:
    data_dir: Path
    sidecars: int = 2
    app_ids: list[str] = field(default_factory=list)
    store: str = "sqlite"
    etcd_endpoints: list[str] = field(default_factory=list)
    base_grpc_port: int = 50001
    base_http_port: int = 3500
    test_actors: bool = False
    ready_timeout_s: float = 60.0
    # Mutual TLS between nodes (raftkit.tls), with a CA and certificate made in DIR/tls;
    # each sidecar's peer API then on a port of its own, from this one (default: the
    # base gRPC port + PEER_PORT_OFFSET).
    tls: bool = False
    base_peer_port: int | None = None
    etcd_quota_bytes: int = ETCD_QUOTA_BYTES
    etcd_compaction_retention: str = ETCD_COMPACTION_RETENTION


class DataDirBusyError(Exception):
    """Another `actorflow up` holds the data directory."""


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


async def run_up(opts: UpOptions) -> int:
    cluster = Cluster(opts)
    try:
        cluster._prepare()
    except DataDirBusyError as exc:
        print(f"actorflow up: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = None
    code = 0
    try:
        await cluster.start_control_plane()
        apps = opts.app_ids or ["app"] * opts.sidecars
        for app_id in apps:
            await cluster.add_sidecar(app_id)
        sock = cluster.dir / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        control = await asyncio.start_unix_server(cluster.handle_control, path=str(sock))
        cluster.write_cluster_json()
        print(
            f"actorflow up: {len(cluster.sidecars)} sidecars ready; {cluster.dir / 'cluster.json'}",
            flush=True,
        )
        for s in cluster.sidecars.values():
            print(f"  {s.name}: app {s.app_id}  grpc {s.grpc}  http http://{s.http}", flush=True)
        await _watch(cluster, stop)
    except StartError as exc:
        print(f"actorflow up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if control is not None:
            control.close()
        await cluster.stop()
        cluster._unlock_dir()
    return code


async def _watch(cluster: Cluster, stop: asyncio.Event) -> None:
    """Wait for a stop signal; report (never restart) processes that die meanwhile."""
    reported: set[str] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        for name, proc in list(cluster.procs.items()):
            if not proc.alive and name not in reported:
                reported.add(name)
                print(
                    f"actorflow up: {name} exited with code {proc.returncode}; "
                    f"not restarting (log: {proc.log_path})",
                    file=sys.stderr,
                    flush=True,
                )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="actorflow up",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=Path(".actorflow"))
    p.add_argument("--sidecars", type=int, default=2)
    p.add_argument("--app-ids", default="", help="one sidecar per app id, comma-separated")
    p.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite")
    p.add_argument("--etcd-endpoints", default="", help="use this etcd cluster (host:port,...)")
    p.add_argument("--base-grpc-port", type=int, default=50001)
    p.add_argument("--base-http-port", type=int, default=3500)
    p.add_argument("--test-actors", action="store_true", help="sidecars host `counter` actors")
    p.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS between all nodes (a CA and certificate made in DATA_DIR/tls; "
        "each sidecar's peer API on --base-peer-port + its index)",
    )
    p.add_argument(
        "--base-peer-port",
        type=int,
        default=None,
        help="with --tls: the first sidecar's peer port (default: --base-grpc-port + 1000)",
    )
    p.add_argument(
        "--etcd-quota-bytes",
        type=int,
        default=ETCD_QUOTA_BYTES,
        help="with --store etcd: the space quota of the etcd members up starts (default 8 GiB)",
    )
    p.add_argument(
        "--etcd-compaction-retention",
        default=ETCD_COMPACTION_RETENTION,
        help="with --store etcd: how much key history those members keep, as an etcd "
        "duration (default 5m; older revisions are compacted away; 0 keeps all)",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.sidecars < 1 and not args.app_ids:
        print("actorflow up: --sidecars must be at least 1", file=sys.stderr)
        return 2
    opts = UpOptions(
        data_dir=args.data_dir,
        sidecars=args.sidecars,
        app_ids=[a for a in args.app_ids.split(",") if a],
        store=args.store,
        etcd_endpoints=[e for e in args.etcd_endpoints.split(",") if e],
        base_grpc_port=args.base_grpc_port,
        base_http_port=args.base_http_port,
        test_actors=args.test_actors,
        tls=args.tls,
        base_peer_port=args.base_peer_port,
        etcd_quota_bytes=args.etcd_quota_bytes,
        etcd_compaction_retention=args.etcd_compaction_retention,
    )
    from placement.cli import run_event_loop

    code = 0

    async def run() -> None:
        nonlocal code
        code = await run_up(opts)

    run_event_loop(run())
    return code


def scale_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow scale", description="Add or remove a sidecar of a running `actorflow up`."
    )
    p.add_argument("--data-dir", type=Path, default=Path(".actorflow"))
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--add", action="store_true")
    group.add_argument("--remove", metavar="NAME", nargs="?", const="")
    p.add_argument("--app-id", default="")
    args = p.parse_args(argv)
    request = (
        {"op": "add", "app_id": args.app_id} if args.add else {"op": "remove", "name": args.remove}
    )
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(args.data_dir / CONTROL_SOCKET))
        except (FileNotFoundError, ConnectionRefusedError):
            print(
                f"actorflow scale: no actorflow up is running with --data-dir {args.data_dir} "
                f"(nothing answers on {args.data_dir / CONTROL_SOCKET})",
                file=sys.stderr,
            )
            return 1
        s.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(s.makefile().readline())
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1
