"""`actorflow certs`: a CA and one certificate for every node of a cluster, for the
mutual TLS of `raftkit.tls` (placement, reminders and the sidecars' peer ports).

    actorflow certs --out DIR [--host NAME ...] [--days N]

writes DIR/ca.pem, DIR/ca-key.pem, DIR/node.pem and DIR/node-key.pem (keys mode 0600).
Every process of the cluster then runs with

    ACTORFLOW_TLS_CA=DIR/ca.pem ACTORFLOW_TLS_CERT=DIR/node.pem ACTORFLOW_TLS_KEY=DIR/node-key.pem

The one node certificate names every `--host` (DNS names, or IP addresses) and serves
as server and client certificate alike; with many hosts, give the certificate one name
(`--host actorflow.internal`) and set `ACTORFLOW_TLS_SERVER_NAME` to it everywhere, so
that clients check that name whatever address they dial. Keep ca-key.pem off the nodes:
it is needed only to make more certificates. A cluster with its own PKI uses its own
files instead; they need the same shape (a CA, and certificates it signed for both
server and client use).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftkit.tls import ENV_CA, ENV_CERT, ENV_KEY, TlsFiles

__all__ = ["CertPaths", "main", "write_cluster_certs"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class CertPaths:
    """Where a node's three TLS files are; `cluster.json` names them (`as_json`)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, out: Path) -> CertPaths:
        """The files `write_cluster_certs(out)` writes."""
        return cls(out / "ca.pem", out / "node.pem", out / "node-key.pem")

    @classmethod
    def from_json(cls, files: Mapping[str, str]) -> CertPaths:
        return cls(Path(files["ca"]), Path(files["cert"]), Path(files["key"]))

    def as_json(self) -> dict[str, str]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key)}

    def env(self) -> dict[str, str]:
        """The `raftkit.tls` environment of a process that uses these files."""
        return {ENV_CA: str(self.ca), ENV_CERT: str(self.cert), ENV_KEY: str(self.key)}

    def load(self) -> TlsFiles:
        return TlsFiles.load(self.ca, self.cert, self.key)


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True,
    content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_cluster_certs(
    out: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 825, common_name: str = "node"
) -> CertPaths:
    """A new CA in `out`, and one certificate it signed for `hosts` (see the module)."""
    if not hosts:
        raise ValueError("at least one host name or address is needed")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: during a move to a new CA, nodes trust a bundle of both, and a
    # verifier that found two CAs of one name would check against the wrong one.
    ca_name = _name(f"actorflow cluster CA {now:%Y-%m-%d %H:%M:%S} {secrets.token_hex(4)}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = CertPaths.in_dir(out)
    _write(out / "ca-key.pem", _key_pem(ca_key), private=True)
    _write(paths.ca, ca.public_bytes(serialization.Encoding.PEM), private=False)
    _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(paths.key, _key_pem(key), private=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="actorflow certs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="directory for the four files")
    p.add_argument(
        "--host",
        action="append",
        default=None,
        help=f"a name or address the certificate is for, repeatable (default: {DEFAULT_HOSTS})",
    )
    p.add_argument("--days", type=int, default=825, help="validity in days")
    ns = p.parse_args(argv)
    if ns.out.exists() and any((ns.out / n).exists() for n in ("ca.pem", "ca-key.pem")):
        print(f"actorflow certs: {ns.out} already holds a CA; not overwritten", file=sys.stderr)
        return 2
    try:
        paths = write_cluster_certs(ns.out, ns.host or DEFAULT_HOSTS, ns.days)
    except (ValueError, OSError) as exc:
        print(f"actorflow certs: {exc}", file=sys.stderr)
        return 2
    for name, value in paths.env().items():
        print(f"{name}={value}")
    return 0
