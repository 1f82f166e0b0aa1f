"""One sidecar process: wires the store, placement, reminders, the actor runtime and the
servers together, and stops them in order.

Start: open the store; serve gRPC (the app-facing Durable Task API and the peer API on
one port) and HTTP; join placement with this sidecar's actor types; subscribe to
reminder triggers. Stop (SIGINT/SIGTERM): stop accepting (activate no new actor), drain
(deactivate every actor, finishing turns in progress within the drain timeout), and only
then leave placement, so that no other sidecar activates one of our actors while it
still runs a turn here (callers meanwhile are refused and wait for the next table);
cancel the rest, flush (close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import grpc
import msgpack

from placement.client import ClientConfig, PlacementClient
from placement.errors import NoHostsError
from placement.table import Table, TableHost
from raftkit.listen import EXCLUSIVE_PORT, bind_grpc
from raftkit.service import KEEPALIVE_SERVER_OPTIONS
from reminders.api.v1 import reminders_pb2 as rpb
from reminders.client import RemindersClient, TriggerSubscriber
from sidecar.actors.base import REMINDER_METHOD, ActorFactory
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool, PeerService
from sidecar.actors.router import ActorRouter
from sidecar.auth import TokenInterceptor
from sidecar.config import SidecarConfig
from sidecar.counter import ACTOR_TYPE as COUNTER_TYPE
from sidecar.counter import CounterActor, open_turn_log
from sidecar.engine.activity_actor import ActivityActor
from sidecar.engine.activity_sweep import ActivitySweep
from sidecar.engine.app_wait import AppWait
from sidecar.engine.apps import AppConnections
from sidecar.engine.metrics import EngineMetrics
from sidecar.engine.naming import activity_type, index_prefix, workflow_type
from sidecar.engine.taskhub import TaskHubService
from sidecar.engine.waits import Waiting
from sidecar.engine.workflow_actor import WorkflowActor
from sidecar.store import StateStore, StoreError, open_store
from sidecar.taskhub_wire import taskhub_generic_handler, unknown_method_handler

log = logging.getLogger(__name__)

API_LEVEL = 1
HEALTH_CACHE_S = 1.0


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True, slots=True)
class ActorServices:
    """What actors of this sidecar (and the TaskHub service) may use."""

    store: StateStore
    router: ActorRouter
    app_id: str
    namespace: str
    turn_log: Any
    apps: AppConnections
    reminders: RemindersClient | None
    waiting: Waiting = field(default_factory=Waiting)  # callers held by workflow actors
    metrics: EngineMetrics = field(default_factory=EngineMetrics)  # for /metrics
    activity_sweep: ActivitySweep | None = None  # rows that may outlive a purge
    # The app ids of the sidecars in the placement table: a purge looks for the rows of
    # activities its instance ran in another app under those apps' keys.
    cluster_apps: Callable[[], Collection[str]] = tuple


# A running workflow woken after a table change (`_resume_owned`) is asked again when
# the call fails and it is still ours: otherwise it would wait for the next change.
WAKE_ATTEMPTS = 3
WAKE_RETRY_S = 1.0
RESUME_RETRY_MAX_S = 30.0  # a failed resume pass is run again, backing off up to this


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.store: StateStore | None = None
        self.factories: dict[str, ActorFactory] = {
            workflow_type(config.namespace, config.app_id): WorkflowActor,
            activity_type(config.namespace, config.app_id): ActivityActor,
        }
        self.apps = AppConnections(
            activity_window=config.app_activity_window,
            workflow_window=config.app_workflow_window,
            max_item_bytes=config.max_payload_bytes,
        )
        self.services: ActorServices | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._resume_again = False  # a table came while a resume was running
        if config.test_actors:
            self.factories[COUNTER_TYPE] = CounterActor
        self.placement: PlacementClient | None = None
        self.host: ActorHost | None = None
        self.router: ActorRouter | None = None
        self.peers = PeerPool(config.tls)
        self.reminders: RemindersClient | None = None
        self._subscriber_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._peer_grpc: grpc.aio.Server | None = None
        self.peer_port = 0
        self._turn_log: Any = None
        self._health: tuple[float, bool] = (0.0, False)
        self.grpc_port = 0
        self.sweep: ActivitySweep | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._app_wait_task: asyncio.Task[None] | None = None

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        self.store = await open_store(cfg.store_url)
        self._turn_log = open_turn_log(cfg.turn_log)
        # A new incarnation at each start: back within placement's drop grace, this
        # sidecar still changes its table entry, and the round that records it makes
        # every sidecar re-issue the pending work of the running workflows it owns (the
        # actors this one held before are gone: `HostRecord.same_table_entry`).
        me = TableHost(
            name=cfg.name,
            address=cfg.name,
            app_id=cfg.app_id,
            namespace=cfg.namespace,
            actor_types=tuple(sorted(self.factories)),
            api_level=API_LEVEL,
            incarnation=secrets.token_hex(8),
        )
        self.placement = PlacementClient(
            ClientConfig(tuple(cfg.placement), tls=cfg.tls),
            me,
            on_update=self._on_table,
            on_lost=self._on_placement_lost,
        )
        self.host = ActorHost(
            self.factories,
            sidecar=cfg.name,
            services=None,
            owns=self._owns,
            idle_timeout_s=cfg.idle_timeout_s,
            drain_timeout_s=cfg.drain_timeout_s,
        )
        self.router = ActorRouter(
            self.placement, self.host, self.peers, cfg.name, default_timeout_s=cfg.call_timeout_s
        )
        if cfg.reminders:
            self.reminders = RemindersClient(cfg.reminders, tls=cfg.tls)
        self.sweep = ActivitySweep(self.store, cfg.activity_sweep_s)
        self._sweep_task = asyncio.create_task(self.sweep.run(), name="activity sweep")
        self._app_wait_task = asyncio.create_task(self._watch_apps(), name="app wait")
        self.services = ActorServices(
            self.store, self.router, cfg.app_id, cfg.namespace, self._turn_log, self.apps,
            self.reminders, activity_sweep=self.sweep, cluster_apps=self._cluster_apps,
        )  # fmt: skip
        self.host.services = self.services
        await self._serve_grpc()
        await self.placement.start()
        if cfg.reminders:
            subscriber = TriggerSubscriber(
                cfg.reminders,
                host=cfg.name,
                namespace=cfg.namespace,
                app_id=cfg.app_id,
                actor_types=sorted(self.factories),
                handler=self._on_triggers,
                tls=cfg.tls,
                on_regress=self._on_reminders_back,
            )
            self._subscriber_task = asyncio.create_task(subscriber.run(), name="reminders")
        log.info(
            "sidecar %s (app %s) serving on %s%s", cfg.name, cfg.app_id, cfg.grpc_address,
            "" if cfg.peer_address is None
            else f", peers on {cfg.peer_address} ({'mutual TLS' if cfg.tls else 'plaintext'})",
        )  # fmt: skip

    def _grpc_server(self, interceptors: list[grpc.aio.ServerInterceptor]) -> grpc.aio.Server:
        return grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self.config.max_payload_bytes),
                ("grpc.max_send_message_length", self.config.max_payload_bytes),
                # The SDK pings every 30 s, calls in flight or not: with gRPC's default
                # policy the third such ping got GOAWAY and the connection, with a
                # client's held wait on it, was closed.
                *KEEPALIVE_SERVER_OPTIONS,
                EXCLUSIVE_PORT,
            ],
        )

    async def _serve_grpc(self) -> None:
        """The app's API on `grpc_address`; the peer API there too, or on a port of its
        own (`peer_address`, over mutual TLS when configured)."""
        assert self.placement is not None and self.host is not None
        cfg = self.config
        server = self._grpc_server([TokenInterceptor(cfg.api_token)] if cfg.api_token else [])
        peer = PeerService(self.host.invoke, self._wait_unlocked).handler()
        app = taskhub_generic_handler(TaskHubService(self.services), aio=True)
        unknown = unknown_method_handler(aio=True)
        if cfg.peer_address is None:
            server.add_generic_rpc_handlers((peer, app, unknown))
        else:
            server.add_generic_rpc_handlers((app, unknown))
            peers = self._grpc_server([])
            peers.add_generic_rpc_handlers((peer, unknown))
            self.peer_port = bind_grpc(peers, cfg.peer_address, "peer API", cfg.tls)
            await peers.start()
            self._peer_grpc = peers
        self.grpc_port = bind_grpc(server, cfg.grpc_address, "gRPC API")
        await server.start()
        self._grpc = server

    async def stop(self) -> None:
        if self._resume_task is not None:
            self._resume_task.cancel()  # the next owners wake what this sidecar leaves
        if self.host is not None:
            self.host.refuse_new()
            # Before leaving: once placement has removed us, the others activate our
            # actors at once (two activations with a turn running here would lose writes).
            await self.host.deactivate_all()
        if self.placement is not None:
            await self.placement.stop()
        await _cancelled(self._subscriber_task)
        for server in (self._grpc, self._peer_grpc):
            if server is not None:
                await server.stop(grace=1.0)
        await self.peers.close()
        await _cancelled(self._app_wait_task)
        if self.reminders is not None:
            await self.reminders.close()
        await self._stop_sweep()
        if self.store is not None:
            await self.store.close()
        if self._turn_log is not None:
            self._turn_log.close()

    def _cluster_apps(self) -> frozenset[str]:
        table = self.placement.table if self.placement else None
        if table is None:
            return frozenset()
        ns = self.config.namespace
        return frozenset(h.app_id for h in table.hosts if h.namespace == ns)

    async def _watch_apps(self) -> None:
        """Warn while work waits with no app connected (`sidecar.engine.app_wait`)."""
        watch = AppWait(warn_after_s=self.config.app_wait_warn_s)
        apps = self.apps
        while True:
            await asyncio.sleep(min(1.0, watch.warn_after_s / 4))  # a periodic check
            notice = watch.observe(
                time.monotonic(), apps.connections, apps.queued_workflows, apps.queued_activities
            )
            if notice is None:
                continue
            if notice.warning:
                log.warning(
                    "%s; start one with DAPR_GRPC_ENDPOINT=%s", notice.message,
                    self.config.grpc_address,
                )  # fmt: skip
            else:
                log.info("%s", notice.message)

    async def _stop_sweep(self) -> None:
        """Stop the activity sweep, after one last pass over every row it holds."""
        if self._sweep_task is None or self.sweep is None:
            return
        self._sweep_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweep_task
        try:
            await self.sweep.sweep(everything=True)
        except StoreError as exc:
            log.warning("activity sweep at shutdown: %s", exc)

    # ---- placement hooks

    def _owns(self, actor_type: str, actor_id: str) -> int | None:
        table = self.placement.table if self.placement else None
        if table is None:
            return None
        try:
            owner = table.rings.lookup(self.config.namespace, actor_type, actor_id)
        except NoHostsError:
            return None
        return table.version if owner == self.config.name else None

    async def _on_table(self, old: Table | None, new: Table) -> None:
        assert self.host is not None
        await self.host.deactivate_unowned()
        self._wake_owned()

    async def _on_reminders_back(self, _old_term: int, _term: int) -> None:
        """The reminders service went back in time (restored from an older copy, or
        started empty): the timers armed since are missing there. Waking the running
        workflows arms each one's timers again from the store."""
        self._wake_owned()

    def _wake_owned(self) -> None:
        self._resume_again = True
        if self._resume_task is None or self._resume_task.done():
            self._resume_task = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        """Resume after every table change; changes that come while a resume runs are
        folded into one more pass (its list of owned workflows came from an older table,
        so the ones the newer table gives us would be left waiting). A pass that fails
        (the store out of reach, or workflows whose wake kept failing) is run again
        after a backoff, until one succeeds: nothing else would wake the workflows a
        dead sidecar left, until the next table change."""
        delay_s = WAKE_RETRY_S
        while self._resume_again:
            self._resume_again = False
            try:
                await self._resume_owned()
            except Exception as exc:
                log.warning("resuming running workflows failed; again in %.3gs: %s", delay_s, exc)
                self._resume_again = True
                await asyncio.sleep(delay_s)  # retry backoff
                delay_s = min(delay_s * 2, RESUME_RETRY_MAX_S)
            else:
                delay_s = WAKE_RETRY_S

    async def _resume_owned(self) -> None:
        """Wake the running workflows this sidecar owns (after a join, a leave, a crash
        elsewhere, or a whole-cluster restart): each loads its state if it was not active
        and re-issues what the store says is pending. Runs once the table is unlocked."""
        assert self.placement is not None and self.store is not None and self.router
        await self.placement.wait_for_version(0, 60)
        cfg = self.config
        wf = workflow_type(cfg.namespace, cfg.app_id)
        prefix = index_prefix(cfg.app_id)
        rows = await self.store.scan_prefix(prefix)
        running = [key[len(prefix) :] for key, row in rows if row.value == b"1"]
        # Active ones too: the actors running their activities may have moved or died.
        todo = [i for i in running if self._owns(wf, i) is not None]
        if todo:
            log.info("resuming %d running workflows after a table change", len(todo))
        router = self.router
        limit = asyncio.Semaphore(64)

        async def wake(instance_id: str) -> bool:
            async with limit:
                for attempt in range(1, WAKE_ATTEMPTS + 1):
                    if self._owns(wf, instance_id) is None:
                        return True  # moved on: its next owner's pass wakes it
                    try:
                        await router.call(wf, instance_id, "recover", b"", timeout_s=30)
                        return True
                    except Exception as exc:
                        log.warning(
                            "resuming workflow %s failed (attempt %d of %d): %s",
                            instance_id, attempt, WAKE_ATTEMPTS, exc,
                        )  # fmt: skip
                    if attempt < WAKE_ATTEMPTS:
                        await asyncio.sleep(WAKE_RETRY_S * attempt)  # retry backoff
                return False

        woken = await asyncio.gather(*(wake(i) for i in todo))
        if not all(woken):
            raise RuntimeError(f"{woken.count(False)} running workflows could not be woken")

    async def _on_placement_lost(self) -> None:
        assert self.host is not None
        await self.host.deactivate_all()

    async def _wait_unlocked(self) -> int:
        assert self.placement is not None
        table = await self.placement.wait_for_version(0, 5.0)
        return table.version

    # ---- reminders

    async def _on_triggers(self, term: int, triggers: list[rpb.Trigger]) -> list[bool]:
        assert self.router is not None
        router = self.router

        async def deliver(t: rpb.Trigger) -> bool:
            payload = msgpack.packb({"name": t.key.name, "data": t.data, "due_ms": t.due_ms})
            try:
                await router.call(
                    t.key.actor_type, t.key.actor_id, REMINDER_METHOD, payload, timeout_s=10.0
                )
            except Exception as exc:
                log.warning(
                    "reminder %s for %s/%s not delivered: %s",
                    t.key.name,
                    t.key.actor_type,
                    t.key.actor_id,
                    exc,
                )
                return False
            return True

        return list(await asyncio.gather(*(deliver(t) for t in triggers)))

    # ---- health

    async def healthy(self) -> bool:
        """Connected to placement (when hosting actors) and a reminders leader answers."""
        at, ok = self._health
        now = time.monotonic()
        if now - at < HEALTH_CACHE_S:
            return ok
        ok = await self._check_health()
        self._health = (now, ok)
        return ok

    async def _check_health(self) -> bool:
        if self.factories and (self.placement is None or not self.placement.connected):
            return False
        if self.reminders is None:
            return True
        for address in self.config.reminders:
            with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
                info = await self.reminders.info(address, timeout_s=0.5)
                if info.is_leader and info.has_quorum:
                    return True
        return False
