"""Hosts on one machine: network namespaces joined by veth pairs to one bridge.

Each `Host` is a network namespace with its own address on a private /24; the bridge
lives in the test's own namespace with the .1 address, so the test reaches every host
and every host reaches every other one through a real network stack. `isolate` takes a
host's link down (its processes stay up and can still be reached from inside the
namespace); `heal` brings it back. Everything is removed on `close`, also after a
failure. Needs root and `ip` (iproute2); `block` (a partial partition) needs `iptables`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


class NetLabUnavailable(RuntimeError):
    """Not root, or no `ip`: network namespaces cannot be made here."""


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str
    link: str  # the veth end inside the namespace

    def argv(self, *command: str) -> list[str]:
        """`command` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]


class NetLab:
    def __init__(self, names: list[str]) -> None:
        if os.geteuid() != 0:
            raise NetLabUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetLabUnavailable("`ip` (iproute2) is not installed")
        tag = os.getpid() % 10_000
        self.subnet = f"10.231.{tag % 250 + 1}"
        self.bridge = f"afbr{tag}"
        self.gateway = f"{self.subnet}.1"
        self.hosts: dict[str, Host] = {}
        self._made_bridge = False
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(names):
                self._add(i, name, tag)
        except BaseException:
            self.close()
            raise

    def _add(self, i: int, name: str, tag: int) -> None:
        netns = f"af{tag}-{name}"
        outer, inner = f"afv{tag}x{i}", f"afv{tag}y{i}"
        subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
        host = Host(name, netns, f"{self.subnet}.{10 + i}", inner)
        self.hosts[name] = host
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", inner, "netns", netns)
        _ip("addr", "add", f"{host.address}/24", "dev", inner, netns=netns)
        _ip("link", "set", inner, "up", netns=netns)

    def isolate(self, name: str) -> None:
        host = self.hosts[name]
        _ip("link", "set", host.link, "down", netns=host.netns)

    def heal(self, name: str) -> None:
        host = self.hosts[name]
        _ip("link", "set", host.link, "up", netns=host.netns)

    def block(self, name: str, peers: list[str]) -> None:
        """Drop every packet between host `name` and `peers` (iptables inside `name`'s
        namespace) while its link stays up: a black hole for those peers only. Nothing
        resets or refuses; only timeouts tell either side. Needs `iptables`."""
        self._filter(name, peers, "-A")

    def unblock(self, name: str, peers: list[str]) -> None:
        self._filter(name, peers, "-D")

    def _filter(self, name: str, peers: list[str], action: str) -> None:
        if shutil.which("iptables") is None:
            raise NetLabUnavailable("`iptables` is not installed")
        host = self.hosts[name]
        for peer in peers:
            address = self.hosts[peer].address
            for chain, side in (("OUTPUT", "-d"), ("INPUT", "-s")):
                argv = ["ip", "netns", "exec", host.netns, "iptables", action, chain, side,
                        address, "-j", "DROP"]  # fmt: skip
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")

    def close(self) -> None:
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        self.hosts.clear()
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            self._made_bridge = False
