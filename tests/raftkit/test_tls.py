"""The TLS settings (`raftkit.tls`) and the certificates `actorflow certs` makes: all
three files or none, a clear error for anything unusable, and certificates that name
their hosts and serve as server and client certificate alike."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from actorflow import certs
from actorflow.certs import write_cluster_certs
from actorflow.up import Cluster, UpOptions
from placement.client import ClientConfig
from raftkit.errors import ConfigError
from raftkit.listen import bind_grpc
from raftkit.tls import ENV_CA, ENV_CERT, ENV_KEY, ENV_SERVER_NAME, TlsError, TlsFiles
from sidecar.actors.peer import PeerPool, PeerService
from sidecar.api.v1 import actors_pb2
from sidecar.config import SidecarConfig


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return write_cluster_certs(tmp_path_factory.mktemp("tls"), ["localhost", "10.0.0.7"])


def test_no_files_is_plaintext() -> None:
    assert TlsFiles.from_env({}) is None


def test_the_three_files_are_read_once(made: certs.CertPaths) -> None:
    tls = TlsFiles.from_env({**made.env(), ENV_SERVER_NAME: "localhost"})
    assert tls is not None
    assert tls.ca == made.ca.read_bytes() and tls.key == made.key.read_bytes()
    assert tls.channel_options() == [("grpc.ssl_target_name_override", "localhost")]
    tls.server_credentials()
    tls.channel_credentials()


@pytest.mark.parametrize("missing", [ENV_CA, ENV_CERT, ENV_KEY])
def test_a_missing_file_setting_is_named(made: certs.CertPaths, missing: str) -> None:
    env = {k: v for k, v in made.env().items() if k != missing}
    with pytest.raises(TlsError, match=f"missing {missing}"):
        TlsFiles.from_env(env)


def test_a_server_name_alone_is_refused() -> None:
    with pytest.raises(TlsError, match=ENV_SERVER_NAME):
        TlsFiles.from_env({ENV_SERVER_NAME: "actorflow.internal"})


def test_unreadable_or_not_pem_files_are_clear_errors(
    made: certs.CertPaths, tmp_path: Path
) -> None:
    with pytest.raises(TlsError, match="cannot read the TLS CA"):
        TlsFiles.from_env({**made.env(), ENV_CA: str(tmp_path / "nope.pem")})
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(TlsError, match="is not a PEM file"):
        TlsFiles.from_env({**made.env(), ENV_KEY: str(junk)})
    assert issubclass(TlsError, ConfigError)  # every CLI reports it as a bad setting


def test_the_node_certificate_names_its_hosts_and_both_uses(made: certs.CertPaths) -> None:
    cert = x509.load_pem_x509_certificate(made.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(made.ca.read_bytes())
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    for key in (made.key, made.key.parent / "ca-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certs_never_overwrites_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs.main(["--out", str(tmp_path / "c"), "--host", "node1.example.internal"]) == 0
    assert f"{ENV_CA}={tmp_path / 'c' / 'ca.pem'}" in capsys.readouterr().out
    before = (tmp_path / "c" / "ca.pem").read_bytes()
    assert certs.main(["--out", str(tmp_path / "c")]) == 2
    assert "already holds a CA" in capsys.readouterr().err
    assert (tmp_path / "c" / "ca.pem").read_bytes() == before


def test_a_sidecar_with_tls_needs_a_peer_port(made: certs.CertPaths) -> None:
    tls = TlsFiles.from_env(made.env())
    with pytest.raises(ConfigError, match="--peer-address"):
        SidecarConfig(placement=("127.0.0.1:1",), tls=tls)
    cfg = SidecarConfig(placement=("127.0.0.1:1",), tls=tls, peer_address="10.0.0.7:50002")
    assert cfg.name == "10.0.0.7:50002"  # what placement gives the other sidecars to dial
    assert ClientConfig(("127.0.0.1:1",), tls=tls).tls is tls


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_up_decides_tls_for_its_children_whatever_the_shell_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    monkeypatch.setenv(ENV_CA, "/from/the/shell/ca.pem")
    monkeypatch.setenv(ENV_SERVER_NAME, "shell.example")
    cluster = Cluster(UpOptions(data_dir=tmp_path / "af", tls=tls))
    cluster._prepare()
    try:
        env = cluster._env()
    finally:
        cluster._unlock_dir()
    assert ENV_SERVER_NAME not in env
    if tls:
        assert env[ENV_CA] == str(tmp_path / "af" / "tls" / "ca.pem")
        assert TlsFiles.from_env(env) is not None
    else:
        assert not any(k.startswith("ACTORFLOW_TLS_") for k in env)


async def _echo(actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
    return payload


async def _unlocked() -> int:
    return 1


async def _call_over(server_tls: TlsFiles, client_tls: TlsFiles) -> bytes:
    """One peer call from a client with `client_tls` to a server with `server_tls`."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((PeerService(_echo, _unlocked).handler(),))
    port = bind_grpc(server, "127.0.0.1:0", "test", server_tls)
    await server.start()
    pool = PeerPool(client_tls)
    try:
        call = actors_pb2.ActorCall(
            call_id=1, actor=actors_pb2.ActorRef(actor_type="t", actor_id="i"),
            method="m", payload=b"hello", table_version=1,
        )  # fmt: skip
        result = await pool.call(f"127.0.0.1:{port}", call, 5.0)
        return result.payload
    finally:
        await pool.close()
        await server.stop(None)


async def test_a_ca_bundle_takes_certificates_of_either_ca(tmp_path: Path) -> None:
    """Moving to a new CA (README): nodes trusting both CAs talk to nodes of either."""
    old = write_cluster_certs(tmp_path / "old")
    new = write_cluster_certs(tmp_path / "new")
    bundle = old.ca.read_bytes() + new.ca.read_bytes()

    def files(paths: certs.CertPaths, ca: bytes) -> TlsFiles:
        return TlsFiles(ca, paths.cert.read_bytes(), paths.key.read_bytes())

    assert await _call_over(files(old, bundle), files(new, bundle)) == b"hello"
    assert await _call_over(files(new, bundle), files(old, bundle)) == b"hello"
    with pytest.raises(ConnectionError):  # one CA only: the other's certificates are refused
        await _call_over(files(new, new.ca.read_bytes()), files(old, old.ca.read_bytes()))


def _self_signed(out: Path, start: datetime.datetime, end: datetime.datetime) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(end)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (out / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, *pkcs8))
    return out / "cert.pem", out / "key.pem"


def test_what_would_only_fail_handshakes_later_is_refused_at_start(
    made: certs.CertPaths, tmp_path: Path
) -> None:
    other = write_cluster_certs(tmp_path / "other")
    with pytest.raises(TlsError, match="is not the key of the certificate"):
        TlsFiles.load(made.ca, made.cert, other.key)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    cert, key = _self_signed(tmp_path / "old", now - 10 * day, now - day)
    with pytest.raises(TlsError, match="expired on"):
        TlsFiles.load(made.ca, cert, key)
    cert, key = _self_signed(tmp_path / "early", now + day, now + 10 * day)
    with pytest.raises(TlsError, match="is valid only from"):
        TlsFiles.load(made.ca, cert, key)
    with pytest.raises(TlsError, match="cannot be used"):
        TlsFiles.load(made.ca, made.cert, made.cert)  # a certificate where the key goes
    broken = tmp_path / "broken.pem"
    broken.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsError, match="holds no usable certificate"):
        TlsFiles.load(broken, made.cert, made.key)


async def test_one_name_for_the_whole_cluster_with_the_server_name_setting(
    tmp_path: Path,
) -> None:
    """A certificate naming only `actorflow.internal`, dialled at 127.0.0.1: refused,
    unless the client checks that name instead (ACTORFLOW_TLS_SERVER_NAME)."""
    paths = write_cluster_certs(tmp_path / "one", ["actorflow.internal"])
    env = {**paths.env(), ENV_SERVER_NAME: "actorflow.internal"}
    named = TlsFiles.from_env(env)
    plain = TlsFiles.from_env(paths.env())
    assert named is not None and plain is not None
    assert await _call_over(plain, named) == b"hello"
    with pytest.raises(ConnectionError):
        await _call_over(plain, plain)
