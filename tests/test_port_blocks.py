"""`free_port_block` keeps clear of the kernel's range for outgoing connections: a
sidecar added to a running cluster binds a port of its block long after the block was
chosen, and a port in that range can be taken by any connection meanwhile (it failed a
CI run so: "failed to bind to address 127.0.0.1:35026")."""

from __future__ import annotations

import socket
from pathlib import Path

from actorflow.testing import PORT_BLOCK_LOW, free_port_block


def test_a_block_is_free_and_below_the_range_for_outgoing_connections() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        base = free_port_block(8)
        assert base >= PORT_BLOCK_LOW and base + 8 <= low
        for port in range(base, base + 8):
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))  # free: binds
