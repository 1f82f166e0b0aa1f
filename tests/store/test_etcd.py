"""EtcdStore beyond the contract: failover between members, TLS, the wire messages."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor

from sidecar.api.etcd.v3 import kv_pb2 as pb
from sidecar.store import (
    ConflictError,
    EtcdStore,
    EtcdTls,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from sidecar.store.etcd import EtcdConfig, _txn_request, etcd_limits
from sidecar.store.testing import EtcdCluster, EtcdServerTls, fill_to_quota, reclaim_space
from sidecar.workflow import (
    StoredLayout,
    add_events,
    apply_response,
    execution_started_event,
    new_state,
    plan_checkpoint,
    plan_turn,
)
from sidecar.workflow.testing import response, schedule_task_action

StartCluster = Callable[..., EtcdCluster]


async def _increment(store: EtcdStore, key: str) -> None:
    """A fenced read-modify-write (the checkpoint shape), retried on conflict."""
    while True:
        cur = (await store.get_many([key])).get(key)
        try:
            await store.transact(
                {key: b"%d" % (int(cur.value) + 1 if cur else 1)},
                expect={key: cur.version if cur else 0},
            )
            return
        except ConflictError:
            continue


@pytest.mark.slow
async def test_killing_the_member_in_use_is_survived(
    tmp_path: Path, start_cluster: StartCluster
) -> None:
    cluster = start_cluster(tmp_path, 3)
    store = await EtcdStore.open(cluster.store_config(timeout_s=20))
    try:
        for _ in range(10):
            await _increment(store, "counter")
        victim = next(m for m in cluster.members if m.endpoint == store.current_endpoint)
        victim.kill()
        for _ in range(20):
            await _increment(store, "counter")
        assert store.current_endpoint != victim.endpoint
        assert (await store.get_many(["counter"]))["counter"].value == b"30"
        assert len(await store.scan_prefix("count")) == 1

        for member in cluster.members:
            member.kill()
        down = await EtcdStore.open(cluster.store_config(timeout_s=1.0))
        with pytest.raises(StoreUnavailableError) as info:
            await down.get_many(["counter"])
        assert all(endpoint in str(info.value) for endpoint in cluster.endpoints)
        await down.close()
    finally:
        await store.close()
        cluster.stop()


def _write_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
        usage: list[x509.ObjectIdentifier],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("actorflow test CA", ca_key, name("actorflow test CA"), ca_key, ca=True, usage=[])
    files: dict[str, Path] = {}
    files["ca"] = d / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, usage in (
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(who, key, ca.subject, ca_key, ca=False, usage=usage)
        files[who] = d / f"{who}.pem"
        files[who].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        files[f"{who}-key"] = d / f"{who}-key.pem"
        files[f"{who}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


@pytest.mark.slow
async def test_mutual_tls(tmp_path: Path, start_cluster: StartCluster) -> None:
    pki = _write_pki(tmp_path)
    client_tls = EtcdTls(pki["ca"], pki["client"], pki["client-key"])
    cluster = start_cluster(
        tmp_path / "etcd",
        1,
        tls=EtcdServerTls(pki["server"], pki["server-key"], client_ca=pki["ca"]),
        client_tls=client_tls,
    )
    try:
        url = (
            f"etcd://{cluster.endpoints[0]}?ca={pki['ca']}&cert={pki['client']}"
            f"&key={pki['client-key']}&max_txn_ops={cluster.max_txn_ops}"
        )
        store = await open_store(url)
        rev = await store.transact({"k": b"over tls"}, expect={"k": 0})
        assert (await store.get_many(["k"]))["k"].version == rev
        await store.close()

        no_client_cert = await EtcdStore.open(
            cluster.store_config(tls=EtcdTls(pki["ca"]), timeout_s=1.0)
        )
        with pytest.raises(StoreError):
            await no_client_cert.get_many(["k"])
        await no_client_cert.close()
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_out_of_space_is_unavailable_until_reclaimed(
    tmp_path: Path, start_cluster: StartCluster
) -> None:
    """etcd at its quota refuses every write (its NOSPACE alarm). The store says so as
    `StoreUnavailableError`, naming the remedy: the callers that retry on it (a workflow's
    checkpoint) then wait instead of failing. Reads go on. Once the history is compacted,
    the members defragmented and the alarm disarmed, writes go through again."""
    cluster = start_cluster(tmp_path, 1, extra_args=[f"--quota-backend-bytes={16 * 2**20}"])
    store = await EtcdStore.open(cluster.store_config())
    try:
        await store.transact({"kept": b"v1"})
        refused = await fill_to_quota(store)
        assert "database space exceeded" in str(refused)
        assert "etcd is out of space" in str(refused)
        assert (await store.get_many(["kept"]))["kept"].value == b"v1"
        with pytest.raises(StoreUnavailableError, match="out of space"):
            await store.transact({"kept": b"v2"})  # the alarm holds, whatever the write
        await reclaim_space(cluster.endpoints)
        await store.transact({"kept": b"v2"})
        assert (await store.get_many(["kept"]))["kept"].value == b"v2"
    finally:
        await store.close()


def _fields(d: Descriptor) -> dict[str, tuple[int, int, str]]:
    return {
        f.name: (f.number, f.type, f.message_type.name if f.message_type else "") for f in d.fields
    }


def test_wire_messages_match_etcds_own() -> None:
    """Our messages are field for field etcd's (taken from the aetcd package's copy)."""
    from aetcd.rpc import kv_pb2 as etcd_kv
    from aetcd.rpc import rpc_pb2 as etcd_rpc

    ours = pb.DESCRIPTOR.message_types_by_name
    for message in ours:
        theirs = (
            etcd_kv.DESCRIPTOR.message_types_by_name[message]
            if message == "KeyValue"
            else etcd_rpc.DESCRIPTOR.message_types_by_name[message]
        )
        mine = _fields(ours[message])
        reference = _fields(theirs)
        for field, spec in mine.items():
            assert reference[field] == spec, (message, field)
        for nested in ours[message].enum_types:
            reference_enum = theirs.enum_types_by_name[nested.name]
            assert {v.name: v.number for v in nested.values} == {
                v.name: v.number for v in reference_enum.values
            }


def test_a_big_fan_outs_checkpoint_fits_etcds_request_size() -> None:
    """Each transaction of a 12,000-activity fan-out's checkpoint, planned within the
    etcd store's limits, encodes to at most --max-request-bytes. Found on a cluster:
    with a fixed 64 KiB margin for etcd's framing, the first chunk of 10,000 small rows
    encoded to 1,596,640 bytes, the store refused it, and the workflow never moved."""
    config = EtcdConfig(("127.0.0.1:2379",), max_txn_ops=10_000)
    event = execution_started_event(
        name="fan", instance_id="wf", execution_id="e", input="12000", now_ms=1
    )
    started = add_events(new_state("wf"), [event])
    planned = plan_turn(started, 2)
    assert planned is not None
    tasks = [schedule_task_action(i, "double", f"{i:0100d}") for i in range(1, 12_001)]
    state = apply_response(started, planned, response("wf", *tasks), 3).state
    plan = plan_checkpoint(
        StoredLayout(), state, "app", "dapr.internal.default.app.workflow", etcd_limits(config)
    )
    assert len(plan.transactions) >= 2
    for txn in plan.transactions:
        request = _txn_request(txn.writes, plan.expect(7))
        assert request.ByteSize() <= config.max_request_bytes, len(txn.writes)


async def test_unconditional_writes_waiting_together_share_a_txn(
    etcd_single: EtcdCluster, ns: str
) -> None:
    """etcd gives each Txn one revision: 500 concurrent writes without `expect` (a
    fan-out's activity outcomes) take a handful, not 500. Fenced writes stay alone."""
    store = await EtcdStore.open(etcd_single.store_config())
    try:
        before = await store.transact({f"{ns}start": b"0"})
        revisions = await asyncio.gather(
            *(store.transact({f"{ns}k{i:03d}": b"%d" % i}) for i in range(500))
        )
        assert max(revisions) - before < 50, max(revisions) - before
        rows = await store.scan_prefix(f"{ns}k")
        assert [(k, v.value) for k, v in rows] == [(f"{ns}k{i:03d}", b"%d" % i) for i in range(500)]
        assert {v.version for _, v in rows} == set(revisions)
        fenced = await store.transact({f"{ns}k000": b"x"}, expect={f"{ns}k000": revisions[0]})
        with pytest.raises(ConflictError):
            await store.transact({f"{ns}k000": b"y"}, expect={f"{ns}k000": revisions[0]})
        assert fenced > max(revisions)
    finally:
        await store.close()
