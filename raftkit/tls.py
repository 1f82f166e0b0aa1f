"""Mutual TLS for the project's gRPC between nodes (DESIGN.md 4.6): the placement and
reminders APIs, and the actor calls between sidecars.

One setting for every process, from the environment (like the Raft secret):

    ACTORFLOW_TLS_CA      PEM file of the CA that signed every node's certificate
    ACTORFLOW_TLS_CERT    PEM file of this process's certificate (server and client)
    ACTORFLOW_TLS_KEY     PEM file of its private key
    ACTORFLOW_TLS_SERVER_NAME   optional: the name every client checks in the server's
                          certificate, instead of the host it dials (one certificate
                          for the whole cluster, e.g. `actorflow.internal`)

All three files or none, checked at start (they parse, the key is the certificate's,
the certificate is valid now). With them, a server takes only clients that present a
certificate of that CA, and a client takes only servers that do; without them,
everything is plaintext, as before. An app's own API (the sidecar's gRPC and HTTP ports)
is not covered: it stays plaintext, guarded by the API token, on the app's host.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from raftkit.errors import ConfigError

__all__ = ["ENV_CA", "ENV_CERT", "ENV_KEY", "ENV_SERVER_NAME", "TlsError", "TlsFiles", "channel"]

ENV_CA = "ACTORFLOW_TLS_CA"
ENV_CERT = "ACTORFLOW_TLS_CERT"
ENV_KEY = "ACTORFLOW_TLS_KEY"
ENV_SERVER_NAME = "ACTORFLOW_TLS_SERVER_NAME"
_PEM_MARK = b"-----BEGIN "


class TlsError(ConfigError):
    """The TLS settings are incomplete, or a file they name cannot be used."""


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    if _PEM_MARK not in data:
        raise TlsError(f"the TLS {what} {path} is not a PEM file")
    return data


@dataclass(frozen=True)
class TlsFiles:
    """The PEM contents (read once, at start: a missing file stops the process there,
    not at its first connection)."""

    ca: bytes
    cert: bytes
    key: bytes
    server_name: str | None = None

    @classmethod
    def load(cls, ca: Path, cert: Path, key: Path, server_name: str | None = None) -> TlsFiles:
        files = cls(
            _read_pem(ca, "CA"),
            _read_pem(cert, "certificate"),
            _read_pem(key, "key"),
            server_name or None,
        )
        _check(files, ca, cert)
        return files

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsFiles | None:
        """The settings above, or None when none of the three files is named."""
        env = os.environ if env is None else env
        names = (ENV_CA, ENV_CERT, ENV_KEY)
        given = {name: env.get(name, "") for name in names}
        if not any(given.values()):
            if env.get(ENV_SERVER_NAME):
                raise TlsError(f"{ENV_SERVER_NAME} is set without {', '.join(names)}")
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise TlsError(f"TLS needs {', '.join(names)} together; missing {', '.join(missing)}")
        return cls.load(
            Path(given[ENV_CA]), Path(given[ENV_CERT]), Path(given[ENV_KEY]),
            env.get(ENV_SERVER_NAME),
        )  # fmt: skip

    def valid_until(self) -> datetime.datetime:
        """When this node's certificate expires (UTC)."""
        return x509.load_pem_x509_certificate(self.cert).not_valid_after_utc

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def _check(files: TlsFiles, ca: Path, cert_path: Path) -> None:
    """What gRPC would only report as a failed handshake, later and on every connection:
    files that do not parse, a key that is not the certificate's, a certificate out of
    its validity period."""
    try:
        x509.load_pem_x509_certificates(files.ca)
    except ValueError as exc:
        raise TlsError(f"the TLS CA {ca} holds no usable certificate: {exc}") from None
    try:
        cert = x509.load_pem_x509_certificate(files.cert)
    except ValueError as exc:
        raise TlsError(f"the TLS certificate {cert_path} does not parse: {exc}") from None
    try:
        key = serialization.load_pem_private_key(files.key, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: a key that needs a password
        raise TlsError(f"the TLS key for {cert_path} cannot be used: {exc}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise TlsError(f"the TLS key is not the key of the certificate {cert_path}")
    now = datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        raise TlsError(f"the TLS certificate {cert_path} expired on {cert.not_valid_after_utc}")
    if now < cert.not_valid_before_utc:
        raise TlsError(
            f"the TLS certificate {cert_path} is valid only from {cert.not_valid_before_utc}"
        )


def channel(
    target: str, tls: TlsFiles | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to another node: over mutual TLS when `tls` is given."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(
        target, tls.channel_credentials(), options=[*options, *tls.channel_options()]
    )
