"""Listening on a port so that a port in use is an error, not a silent share.

gRPC servers set SO_REUSEPORT unless told not to: a second process binding a port that
is in use then succeeds, and the kernel spreads new connections over both (two sidecars
of two clusters on one port would each take some of the other's clients). Every server
of the project binds with `EXCLUSIVE_PORT` among its options, through `bind_grpc`, which
names the port that failed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkit.tls import TlsFiles

__all__ = ["EXCLUSIVE_PORT", "BindError", "bind_grpc"]

EXCLUSIVE_PORT: tuple[str, int] = ("grpc.so_reuseport", 0)


class BindError(Exception):
    """A port this process must listen on is taken, or not an address of this machine."""


def bind_grpc(server: Any, address: str, what: str, tls: TlsFiles | None = None) -> int:
    """`server.add_insecure_port(address)` (a grpc or grpc.aio server), or a port that
    takes mutual TLS only when `tls` is given; the port bound."""
    try:
        if tls is None:
            port: int = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError:
        raise BindError(
            f"cannot listen on {address} ({what}): the port is in use, or the address "
            "is not one of this machine's"
        ) from None
    return port
