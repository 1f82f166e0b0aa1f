"""Placement client for sidecars: one stream to the leader, rounds applied, lookups.

`PlacementClient` connects to any placement node and follows `not_leader` redirects to
the leader. It reports its host at once and then as a heartbeat, applies every LOCK,
UPDATE and UNLOCK through a `TableView` (which refuses stale orders) and acknowledges
each. While the table is locked, `lookup` waits, at most `lookup_wait_s`.

Fencing: a host cut off from placement for `disconnect_lock_after_s` locks its own table
and tells its runtime (`on_lost`) to deactivate every actor, because by the time the
leader evicts it (the host timeout, which must be longer) others may take its actors.
The next round from a leader unlocks it again.

Going back: orders refused for an older term or table version, in a row for
`regression_grace_s` with none taken between, come from a placement group that went
back in time (restored from an older copy, or started empty), not from a deposed
leader: the client drops its table and its memory of the newer term, and follows it
(`raftkit.regression`).

`on_update(old, new)` is awaited on UPDATE before the acknowledgement: the actor runtime
uses it to drain and deactivate the actors the new table moves elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from placement.api.v1 import placement_pb2 as pb
from placement.api.v1 import placement_pb2_grpc as pb_grpc
from placement.dissemination import Operation
from placement.errors import LookupTimeoutError
from placement.ring import DEFAULT_VNODES
from placement.table import Accepted, Ignored, Outcome, Table, TableHost, TableView
from raftkit.regression import REGRESSION_GRACE_S, Regression
from raftkit.service import KEEPALIVE_CLIENT_OPTIONS
from raftkit.tls import TlsFiles
from raftkit.tls import channel as tls_channel

log = logging.getLogger(__name__)

# Stream endings that say placement will not take this host, rather than a lost link.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)

# The stream's keepalive, tighter than the other clients' (raftkit.service): a host cut
# off without a word (a partition, a black hole) learns it only from an unanswered ping,
# and must have locked itself before the leader evicts it and gives its actors to others.
# Worst case: the link dies just after a ping was answered, and the last heartbeat that
# got through left `heartbeat_interval_s` before that. The host locks at most
# keepalive time + keepalive timeout + `disconnect_lock_after_s` = 3 s after the cut;
# the leader evicts it no sooner than its host timeout (5 s) - `heartbeat_interval_s`
# = 4 s after. With the shared 2 s + 2 s the host locked up to 1 s after its eviction.
# Ping answers come from gRPC's core, not from the servers' Python, so a busy node does
# not miss them; the server takes pings this often (KEEPALIVE_SERVER_OPTIONS).
STREAM_KEEPALIVE: list[tuple[str, int]] = list(
    {**dict(KEEPALIVE_CLIENT_OPTIONS),
     "grpc.keepalive_time_ms": 1000, "grpc.keepalive_timeout_ms": 1000}.items()
)  # fmt: skip

UpdateHook = Callable[[Table | None, Table], Awaitable[None]]
LostHook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    addresses: tuple[str, ...]
    heartbeat_interval_s: float = 1.0
    lookup_wait_s: float = 5.0
    disconnect_lock_after_s: float = 1.0
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 1.0
    tls: TlsFiles | None = None  # mutual TLS to the placement API (raftkit.tls)
    regression_grace_s: float = REGRESSION_GRACE_S


def host_to_proto(host: TableHost) -> pb.Host:
    return pb.Host(
        name=host.name,
        address=host.address,
        app_id=host.app_id,
        namespace=host.namespace,
        actor_types=list(host.actor_types),
        api_level=host.api_level,
        incarnation=host.incarnation,
    )


def host_from_proto(h: pb.Host) -> TableHost:
    return TableHost(
        h.name, h.address, h.app_id, h.namespace, tuple(h.actor_types), h.api_level, h.incarnation
    )


def table_from_proto(table: pb.PlacementTable) -> Table:
    hosts = [host_from_proto(h) for h in table.hosts]
    return Table.build(table.version, table.term, hosts, table.virtual_nodes or DEFAULT_VNODES)


def table_from_delta(base: Table | None, order: pb.PlacementOrder) -> Table | None:
    """The table of `order.version`, from the held table and the order's delta; None
    when the held table is not the delta's base (the order is then refused)."""
    delta = order.delta
    if base is None or base.version != delta.base_version:
        return None
    hosts = {h.name: h for h in base.hosts}
    for name in delta.removed:
        hosts.pop(name, None)
    for h in delta.upserts:
        hosts[h.name] = host_from_proto(h)
    vnodes = delta.virtual_nodes or DEFAULT_VNODES
    return Table.build(order.version, order.term, list(hosts.values()), vnodes)


class PlacementClient:
    def __init__(
        self,
        config: ClientConfig,
        host: TableHost,
        *,
        on_update: UpdateHook | None = None,
        on_lost: LostHook | None = None,
    ) -> None:
        if not config.addresses:
            raise ValueError("at least one placement address is needed")
        self._config = config
        self._host = host
        self._on_update = on_update
        self._on_lost = on_lost
        self._view = TableView()
        self._regression = Regression(config.regression_grace_s)
        self._changed = asyncio.Condition()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outbox: asyncio.Queue[pb.HostReport | None] | None = None
        self.leader: str | None = None

    # ---- public

    @property
    def table(self) -> Table | None:
        return self._view.table

    @property
    def locked(self) -> bool:
        return self._view.locked

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"placement-client-{self._host.name}")

    async def stop(self, timeout: float = 2.0) -> None:
        """Leave on purpose: placement removes the host at once and rebalances."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if self._outbox is not None and self._connected.is_set():
            self._outbox.put_nowait(pb.HostReport(leave=pb.Leave()))
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def stop_without_leaving(self) -> None:
        """Stop as a crash would: no Leave, so placement removes the host only after
        its grace period (used by tests and by fault injection)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_for_version(self, version: int, timeout: float) -> Table:
        """Wait until an unlocked table at `version` or newer is held."""

        def ready() -> bool:
            return not self._view.locked and self._view.version >= version

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        assert self._view.table is not None
        return self._view.table

    async def lookup(
        self,
        actor_type: str,
        actor_id: str,
        namespace: str | None = None,
        *,
        wait_s: float | None = None,
    ) -> TableHost:
        """The host that owns the actor under the current table, waiting while the table
        is locked or absent: at most `lookup_wait_s`, or `wait_s` when that is shorter (a
        caller's own deadline). Raises `LookupTimeoutError` when the wait runs out and
        `NoHostsError` when no host supports the type."""
        table = self._view.table if not self._view.locked else None
        if table is None:
            wait = (
                self._config.lookup_wait_s
                if wait_s is None
                else min(wait_s, self._config.lookup_wait_s)
            )
            try:
                table = await self.wait_for_version(0, max(wait, 0.0))
            except TimeoutError as exc:
                raise LookupTimeoutError(
                    f"placement table locked or absent for {wait:.3g}s"
                ) from exc
        ns = self._host.namespace if namespace is None else namespace
        name = table.rings.lookup(ns, actor_type, actor_id)
        for h in table.hosts:
            if h.name == name:
                return h
        raise AssertionError(f"ring returned {name!r}, which is not in table v{table.version}")

    # ---- the connection loop

    async def _run(self) -> None:
        backoff = self._config.reconnect_min_s
        index = 0
        lock_task: asyncio.Task[None] | None = None
        refused = ""  # the last refusal logged (each different one is logged once)
        while not self._stopping:
            target = self.leader or self._config.addresses[index % len(self._config.addresses)]
            index += 1
            try:
                redirected = await self._session(target)
            except (grpc.aio.AioRpcError, OSError) as exc:
                redirected = None
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in _REFUSALS:
                    # Not a lost connection: placement will not take this host as it is
                    # (a bad name, a wrong secret...). Retried all the same, but said.
                    if exc.details() != refused:
                        refused = str(exc.details())
                        log.error("placement at %s refuses this host: %s", target, refused)
                else:
                    log.debug("placement stream to %s ended: %s", target, exc)
            if self._connected.is_set():
                self._connected.clear()
                lock_task = asyncio.create_task(self._lock_if_still_cut_off())
            if redirected:
                self.leader = redirected
                backoff = self._config.reconnect_min_s
                continue
            self.leader = None
            await asyncio.sleep(backoff)  # reconnect backoff, not a wait for an event
            backoff = min(backoff * 2, self._config.reconnect_max_s)
        if lock_task is not None:
            lock_task.cancel()

    async def _lock_if_still_cut_off(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self._config.disconnect_lock_after_s)
        except TimeoutError:
            log.warning("cut off from placement: locking the table and deactivating actors")
            async with self._changed:
                self._view.lock_out()
                self._changed.notify_all()
            if self._on_lost is not None:
                await self._on_lost()

    async def _session(self, target: str) -> str | None:
        """One stream; returns a leader address when redirected, None when it ends."""
        outbox: asyncio.Queue[pb.HostReport | None] = asyncio.Queue()
        self._outbox = outbox
        outbox.put_nowait(pb.HostReport(status=host_to_proto(self._host)))

        async def reports() -> AsyncIterator[pb.HostReport]:
            while (report := await outbox.get()) is not None:
                yield report

        async with tls_channel(target, self._config.tls, STREAM_KEEPALIVE) as channel:
            call = pb_grpc.PlacementStub(channel).ReportHost(reports())
            heartbeat = asyncio.create_task(self._heartbeat(outbox))
            try:
                async for order in call:
                    if order.HasField("not_leader"):
                        hint = order.not_leader.leader_address
                        return hint if hint and hint != target else None
                    self._connected.set()
                    await self._apply(order, outbox)
            finally:
                heartbeat.cancel()
                # Ends the request stream. grpc feeds it from a task of its own, which it
                # cancels only with a call cancelled here; after a stream placement ended,
                # that task would wait on this queue for ever.
                outbox.put_nowait(None)
        return None

    async def _follows_back(self, order: pb.PlacementOrder, outcome: Outcome) -> bool:
        """Counts `outcome` toward a placement group gone back in time (see the module
        docstring); True when the view was just forgotten to follow it."""
        if isinstance(outcome, Accepted):
            self._regression.accepted()
            return False
        if not (isinstance(outcome, Ignored) and outcome.stale):
            return False
        if not self._regression.refused(time.monotonic()):
            return False
        log.warning(
            "placement went back to term %d, table v%d (this host saw term %d, v%d) for "
            "%.3gs: restored from an older copy or started empty; following it",
            order.term, order.version, self._view.max_term, self._view.version,
            self._regression.grace_s,
        )  # fmt: skip
        async with self._changed:
            self._view.forget()
            self._changed.notify_all()
        if self._on_lost is not None:
            await self._on_lost()
        return True

    async def _take(self, op: Operation, order: pb.PlacementOrder, table: Table | None) -> Outcome:
        async with self._changed:
            outcome = self._view.apply(op, order.version, order.term, table)
            self._changed.notify_all()
        return outcome

    async def _heartbeat(self, outbox: asyncio.Queue[pb.HostReport | None]) -> None:
        while True:
            await asyncio.sleep(self._config.heartbeat_interval_s)  # periodic, by design
            outbox.put_nowait(pb.HostReport(status=host_to_proto(self._host)))

    async def _apply(
        self, order: pb.PlacementOrder, outbox: asyncio.Queue[pb.HostReport | None]
    ) -> None:
        op = Operation(order.operation)
        old_table = self._view.table
        new_table = None
        if op is Operation.UPDATE:
            if order.HasField("delta"):
                new_table = table_from_delta(old_table, order)
            else:
                new_table = table_from_proto(order.table)
        outcome = await self._take(op, order, new_table)
        # After following placement back, a delta's base is gone with the table: the
        # next round sends that table whole.
        if await self._follows_back(order, outcome) and not order.HasField("delta"):
            outcome = await self._take(op, order, new_table)
        if not isinstance(outcome, Accepted):
            log.warning(
                "refused placement order %s v%d term %d: %s",
                op.name,
                order.version,
                order.term,
                outcome.reason,
            )
            return
        if new_table is not None and self._on_update is not None:
            await self._on_update(old_table, new_table)
        ack = pb.RoundAck(operation=order.operation, version=order.version, term=order.term)
        outbox.put_nowait(pb.HostReport(ack=ack))
