"""Pure helpers of the etcd store, no I/O: the Txn request of a transaction, the
`ConflictError` its failure branch's answer names, and the range end of a key prefix."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.api.etcd.v3 import kv_pb2 as pb
from sidecar.store.base import ConflictError, StoreError

__all__ = ["prefix_range_end"]


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (b"\\0" = to the end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _txn_request(writes: Mapping[str, bytes | None], expect: Mapping[str, int]) -> pb.TxnRequest:
    request = pb.TxnRequest()
    for key, version in expect.items():
        encoded = key.encode()
        request.compare.add(
            result=pb.Compare.EQUAL, target=pb.Compare.MOD, key=encoded, mod_revision=version
        )
        request.failure.add().request_range.CopyFrom(pb.RangeRequest(key=encoded, keys_only=True))
    success = request.success
    for key, value in writes.items():
        if value is None:
            success.add().request_delete_range.key = key.encode()
        else:
            put = success.add().request_put
            put.key = key.encode()
            put.value = value
    return request


def _conflict(expect: Mapping[str, int], response: pb.TxnResponse) -> ConflictError:
    actual = {
        kv.key.decode(): kv.mod_revision
        for op in response.responses
        for kv in op.response_range.kvs
    }
    for key, expected in expect.items():
        if actual.get(key, 0) != expected:
            return ConflictError(key, expected, actual.get(key, 0))
    # Every compare held in the failure snapshot: cannot happen in one etcd revision.
    raise StoreError(f"etcd txn failed but every expected version held: {dict(expect)}")
