"""Peers of a Raft-replicated service, given as `RAFT_ADDRESS=API_ADDRESS` pairs.

pysyncobj names nodes (and the leader) by their Raft address; clients need the API
address. Both services take their peers in this form and answer "not the leader" with
the leader's API address.
"""

from __future__ import annotations

from collections.abc import Mapping

from raftkit.config import parse_address
from raftkit.errors import ConfigError

__all__ = ["api_address_for", "check_peers", "parse_peer"]


def parse_peer(text: str) -> tuple[str, str]:
    """`RAFT_HOST:PORT=API_HOST:PORT` -> (raft, api)."""
    raft, sep, api = text.partition("=")
    if not sep:
        raise ConfigError(f"peer must be RAFT_ADDRESS=API_ADDRESS, got {text!r}")
    parse_address(raft, "peer raft address")
    parse_address(api, "peer API address")
    return raft, api


def check_peers(raft_address: str, peers: Mapping[str, str]) -> None:
    for raft, api in peers.items():
        parse_address(raft, "peer raft address")
        parse_address(api, "peer API address")
    if raft_address in peers:
        raise ConfigError("the node's own raft address is listed among its peers")


def api_address_for(
    raft_address: str | None, self_raft: str, self_api: str, peers: Mapping[str, str]
) -> str | None:
    """The API address of the node whose Raft address is `raft_address` (None: unknown)."""
    if raft_address is None:
        return None
    if raft_address == self_raft:
        return self_api
    return peers.get(raft_address)
