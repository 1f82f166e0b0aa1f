"""`EtcdStore`: the state store on a real etcd cluster (v3 API, etcd 3.4 and later).

Client: our own minimal messages (`sidecar/api/etcd/v3/kv.proto`) over grpc.aio, called
under etcd's method paths. aetcd speaks to one endpoint without TLS; etcd3aio balances
round robin over all endpoints, retries every call (Txn included) on UNAVAILABLE and
DEADLINE_EXCEEDED, and puts its own top-level `google` package on `sys.path`. The store
needs to decide per call whether a retry is safe, so it owns the channels.

Versions are etcd `mod_revision`s; `expect` becomes `Compare(MOD == v)` (an absent key
compares as mod_revision 0); the failure branch reads the expected keys, so a
`ConflictError` names the version actually found in the same snapshot.

Failover: one channel per endpoint; calls go to the current endpoint and move on to the
next when it cannot be reached or answers UNAVAILABLE / DEADLINE_EXCEEDED (etcd says
"no leader", "leader changed", "request timed out" that way), round after round with a
short backoff, until `timeout_s`; then `StoreUnavailableError` names every endpoint's
last error. Retries, per kind of call:
- Reads (Range, read-only Txn): always retried; they change nothing.
- A write Txn not sent (the channel never reached READY): retried elsewhere.
- A write Txn sent whose answer was lost: its outcome is unknown. It is retried only
  when it is fenced: some key it writes is also in `expect`. If the first attempt was
  applied, that key's mod_revision moved, so the retry's compare fails and nothing is
  written twice. Such a failed retry is then resolved by reading back the written keys:
  every put key at one mod_revision with our value, every deleted key absent, means our
  attempt was applied (returns that revision); otherwise `ConflictError`. An unfenced
  Txn raises `TransactionOutcomeUnknownError` instead: the caller must reload.
RESOURCE_EXHAUSTED (etcd's NOSPACE alarm, "mvcc: database space exceeded", or "too many
requests") raises `StoreUnavailableError` at once: nothing was written, and it lasts until
an operator frees space or the load drops, so callers wait and write again.
TLS: `EtcdTls` (CA, optional client cert and key for mutual TLS, optional server name
override); each endpoint has its own channel, so the certificate is checked against the
address actually dialled.
Writes without `expect` share Txns (`WriteGroups`): those waiting when a Txn can
leave go as one, at most four such Txns out at a time.
Limits: etcd refuses a Txn with more than `--max-txn-ops` (default 128) operations or a
request over `--max-request-bytes` (default 1.5 MiB). `EtcdConfig` must state the
server's values; a bigger transaction raises `TransactionTooLargeError` before sending.

Modules: `etcd_config` (`EtcdConfig`, `EtcdTls`, `etcd_limits`), `etcd_rpc` (channels,
method paths, reading RPC errors), `etcd_messages` (Txn requests and conflicts, pure);
this one holds `EtcdStore` itself: failover, retries and the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import grpc
import grpc.aio

from sidecar.api.etcd.v3 import kv_pb2 as pb
from sidecar.store.base import (
    NO_EXPECT,
    StoreError,
    StoreLimits,
    StoreUnavailableError,
    TransactionOutcomeUnknownError,
    TransactionTooLargeError,
    Versioned,
    check_transaction,
)
from sidecar.store.etcd_config import EtcdConfig, EtcdTls, etcd_limits
from sidecar.store.etcd_messages import _conflict, _txn_request, prefix_range_end
from sidecar.store.etcd_rpc import (
    _NO_SPACE,
    _NO_SPACE_HINT,
    _RETRYABLE,
    _channel_options,
    _describe,
    _Endpoint,
    _NotConnected,
    _too_large,
)
from sidecar.store.write_groups import WriteGroups

# Names defined beside this module are re-exported: callers import the config, and tests
# `_txn_request`, from here.
__all__ = [
    "EtcdConfig",
    "EtcdStore",
    "EtcdTls",
    "_txn_request",
    "etcd_limits",
    "prefix_range_end",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCAN_PAGE = 1000


class EtcdStore:
    """Open with `await EtcdStore.open(EtcdConfig(("127.0.0.1:2379", ...)))`; see the
    module docstring."""

    def __init__(self, config: EtcdConfig) -> None:
        self._config = config
        creds = config.tls.credentials() if config.tls else None
        options: list[tuple[str, int | str]] = list(_channel_options())
        if config.tls and config.tls.server_name:
            options.append(("grpc.ssl_target_name_override", config.tls.server_name))
        self._endpoints = [
            _Endpoint(
                address,
                grpc.aio.secure_channel(address, creds, options)
                if creds
                else grpc.aio.insecure_channel(address, options),
            )
            for address in config.endpoints
        ]
        self._current = 0
        self._limits = etcd_limits(config)
        self._groups = WriteGroups(lambda merged: self._txn(merged, NO_EXPECT), self._limits)
        self._closed = False

    @classmethod
    async def open(cls, config: EtcdConfig) -> EtcdStore:
        """Channels connect lazily; the first call finds a reachable endpoint."""
        return cls(config)

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next call goes to first (the last one that answered)."""
        return self._endpoints[self._current].address

    # -- failover -------------------------------------------------------------------

    async def _call(self, what: str, attempt: Callable[[_Endpoint, float], Awaitable[T]]) -> T:
        """Run `attempt` on the current endpoint, failing over on connection-level errors
        until `timeout_s`. `attempt` raises `_NotConnected` or a retryable AioRpcError to
        move on; anything else propagates."""
        if self._closed:
            raise StoreUnavailableError("etcd store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.timeout_s
        errors: dict[str, str] = {}
        backoff = 0.05
        n = len(self._endpoints)
        while True:
            for step in range(n):
                index = (self._current + step) % n
                endpoint = self._endpoints[index]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    detail = "; ".join(f"{a}: {e}" for a, e in errors.items()) or "no attempt"
                    raise StoreUnavailableError(
                        f"etcd {what}: no endpoint answered within "
                        f"{self._config.timeout_s}s ({detail})"
                    )
                try:
                    result = await attempt(endpoint, min(remaining, self._config.attempt_timeout_s))
                except _NotConnected:
                    errors[endpoint.address] = "cannot connect"
                    continue
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in _RETRYABLE:
                        raise self._error(what, exc) from exc
                    errors[endpoint.address] = _describe(exc)
                    log.info("etcd %s failed on %s: %s", what, endpoint.address, _describe(exc))
                    continue
                if index != self._current:
                    log.warning("etcd store failed over to %s", endpoint.address)
                    self._current = index
                return result
            await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
            backoff = min(backoff * 2, 0.5)

    def _error(self, what: str, exc: grpc.aio.AioRpcError) -> StoreError:
        if _too_large(exc):
            return TransactionTooLargeError(
                f"etcd refused the {what} as too large ({exc.details()}): the server's "
                f"--max-txn-ops / --max-request-bytes are below this store's configured "
                f"limits {self._limits}",
                ops=-1,
                size=-1,
                limits=self._limits,
            )
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            hint = f": {_NO_SPACE_HINT}" if _NO_SPACE in (exc.details() or "") else ""
            return StoreUnavailableError(f"etcd {what}: {_describe(exc)}{hint}")
        return StoreError(f"etcd {what}: {_describe(exc)}")

    async def _read_txn(self, request: pb.TxnRequest) -> pb.TxnResponse:
        async def attempt(endpoint: _Endpoint, timeout: float) -> pb.TxnResponse:
            if not await endpoint.connected(min(timeout, self._config.connect_timeout_s)):
                raise _NotConnected
            response: pb.TxnResponse = await endpoint.txn(request, timeout=timeout)
            return response

        return await self._call("read", attempt)

    async def _range(self, request: pb.RangeRequest) -> pb.RangeResponse:
        async def attempt(endpoint: _Endpoint, timeout: float) -> pb.RangeResponse:
            if not await endpoint.connected(min(timeout, self._config.connect_timeout_s)):
                raise _NotConnected
            response: pb.RangeResponse = await endpoint.range(request, timeout=timeout)
            return response

        return await self._call("range", attempt)

    async def status(self) -> pb.StatusResponse:
        """Maintenance Status of the endpoint that answers (for health checks)."""

        async def attempt(endpoint: _Endpoint, timeout: float) -> pb.StatusResponse:
            if not await endpoint.connected(min(timeout, self._config.connect_timeout_s)):
                raise _NotConnected
            response: pb.StatusResponse = await endpoint.status(pb.StatusRequest(), timeout=timeout)
            return response

        return await self._call("status", attempt)

    # -- the contract ---------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Versioned] = {}
        revision = 0  # pinned after the first chunk: one snapshot for all of them
        step = self._limits.max_ops
        for i in range(0, len(wanted), step):
            request = pb.TxnRequest()
            for key in wanted[i : i + step]:
                request.success.add().request_range.key = key.encode()
                if revision:
                    request.success[-1].request_range.revision = revision
            response = await self._read_txn(request)
            revision = revision or response.header.revision
            for op in response.responses:
                for kv in op.response_range.kvs:
                    found[kv.key.decode()] = Versioned(kv.value, kv.mod_revision)
        return found

    async def scan_prefix(
        self, prefix: str, *, limit: int | None = None
    ) -> list[tuple[str, Versioned]]:
        # etcd refuses an empty key; b"\0" with range_end b"\0" means every key.
        start, end = prefix.encode() or b"\0", prefix_range_end(prefix.encode())
        out: list[tuple[str, Versioned]] = []
        revision = 0
        while limit is None or len(out) < limit:
            page = _SCAN_PAGE if limit is None else min(_SCAN_PAGE, limit - len(out))
            request = pb.RangeRequest(key=start, range_end=end, limit=page, revision=revision)
            response = await self._range(request)
            revision = revision or response.header.revision
            out.extend(
                (kv.key.decode(), Versioned(kv.value, kv.mod_revision)) for kv in response.kvs
            )
            if not response.more or not response.kvs:
                break
            start = response.kvs[-1].key + b"\0"
        return out

    async def transact(
        self,
        writes: Mapping[str, bytes | None],
        *,
        expect: Mapping[str, int] = NO_EXPECT,
        background: bool = False,
    ) -> int:
        check_transaction(writes, expect, self._limits)
        if writes and not expect:  # background or not: a Txn shared with others waiting
            return await self._groups.write(writes)
        return await self._txn(writes, expect)

    async def _txn(self, writes: Mapping[str, bytes | None], expect: Mapping[str, int]) -> int:
        request = _txn_request(writes, expect)
        size = request.ByteSize()
        if size > self._config.max_request_bytes:
            raise TransactionTooLargeError(
                f"transaction encodes to {size} bytes; etcd allows at most "
                f"{self._config.max_request_bytes} (--max-request-bytes): split it",
                ops=len(writes),
                size=size,
                limits=self._limits,
            )
        fenced = any(key in writes for key in expect)
        sent = False

        async def attempt(endpoint: _Endpoint, timeout: float) -> pb.TxnResponse:
            nonlocal sent
            if not await endpoint.connected(min(timeout, self._config.connect_timeout_s)):
                raise _NotConnected
            try:
                response: pb.TxnResponse = await endpoint.txn(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _RETRYABLE and not fenced:
                    raise TransactionOutcomeUnknownError(
                        f"etcd txn sent to {endpoint.address} got no answer "
                        f"({_describe(exc)}); it may have been applied: reload and decide"
                    ) from exc
                sent = True
                raise
            return response

        response = await self._call("txn", attempt)
        if response.succeeded:
            return response.header.revision if writes else 0
        if sent:
            applied = await self._applied_earlier(writes)
            if applied:
                log.warning(
                    "etcd txn applied by an attempt whose answer was lost (rev %d)", applied
                )
                return applied
        raise _conflict(expect, response)

    async def _applied_earlier(self, writes: Mapping[str, bytes | None]) -> int:
        """The revision at which `writes` are all in place, or 0 (see the module docstring)."""
        if not any(v is not None for v in writes.values()):
            return 0
        current = await self.get_many(list(writes))
        revisions = {
            current[k].version for k, v in writes.items() if v is not None and k in current
        }
        for key, value in writes.items():
            held = current.get(key)
            if (value is None) != (held is None) or (held and held.value != value):
                return 0
        return revisions.pop() if len(revisions) == 1 else 0

    async def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):  # what is still waiting is sent first
            await asyncio.wait_for(self._groups.drain(), self._config.timeout_s)
        self._closed = True
        for endpoint in self._endpoints:
            await endpoint.channel.close()
