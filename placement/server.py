"""One placement node: Raft, the host streams, and the leader's control loop.

The control loop owns everything mutable (streams, the dissemination machine, pending
proposals) and consumes one queue of small events: stream handlers, the Raft tick thread
(through `call_soon_threadsafe`) and a ticker only put events on it. Membership changes
are proposed in batches, one proposal in flight at a time (group commit); the round
machine's effects are carried out here, each step fenced by the Raft term it was decided
under. Around it: the events (`events`), the gRPC service that feeds it (`edge`), the
changes waiting to be proposed (`pending`), the orders held through a quorum gap
(`orders`) and their encoding (`streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc

from placement import membership as ms
from placement.api.v1 import placement_pb2 as pb
from placement.config import PlacementConfig
from placement.dissemination import (
    AckReceived,
    Disseminator,
    Effect,
    Evict,
    HostConnected,
    HostDisconnected,
    LeadershipGained,
    LeadershipLost,
    Operation,
    Refuse,
    RoundCompleted,
    Send,
    TableCommitted,
    Tick,
)
from placement.edge import PlacementService
from placement.errors import InvalidHostError
from placement.events import (
    Event,
    MembershipApplied,
    ProposalDone,
    RaftChanged,
    ReportIn,
    StreamClosed,
    StreamOpened,
    TickIn,
)
from placement.machine import MembershipMachine, command_for
from placement.membership import HostRecord, Membership, RemoveReason
from placement.orders import HeldOrders
from placement.pending import PendingChanges
from placement.streams import (
    HostStream,
    encode_not_leader,
    encode_order,
    encode_update,
    validate_report,
)
from raftkit.errors import RaftError
from raftkit.listen import EXCLUSIVE_PORT, bind_grpc
from raftkit.node import RaftNode, RaftStatus, Role
from raftkit.service import KEEPALIVE_SERVER_OPTIONS

log = logging.getLogger(__name__)

PROPOSAL_TIMEOUT_S = 5.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class PlacementNode:
    def __init__(
        self,
        config: PlacementConfig,
        *,
        on_journal_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_journal_failure`: see `RaftNode` (the server process exits there)."""
        self.config = config
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.machine = MembershipMachine(on_change=self._from_tick_thread_membership)
        self.raft = RaftNode(
            config.raft_config(), self.machine, on_journal_failure=on_journal_failure
        )
        self._diss = Disseminator(ack_timeout_ms=int(config.ack_timeout_s * 1000))
        self._streams: dict[str, HostStream] = {}
        self._membership = Membership()
        self._by_version: dict[int, Membership] = {}
        self._term = 0  # term this node leads (or is becoming leader of); 0 when following
        self._leading = False  # leader command of `_term` applied: rounds may run
        self._pending = PendingChanges()
        self._proposing = False
        self._held = HeldOrders(config.node_id)  # orders of `_term` not sent yet
        self._tasks: list[asyncio.Task[None]] = []
        self._server: grpc.aio.Server | None = None
        self.rounds: deque[RoundCompleted] = deque(maxlen=1000)
        self.bytes_sent = 0

    # ---- lifecycle

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        self.raft.add_listener(self._from_tick_thread_status)
        await asyncio.to_thread(self.raft.start)
        server = grpc.aio.server(options=[*KEEPALIVE_SERVER_OPTIONS, EXCLUSIVE_PORT])
        service = PlacementService(
            self.config,
            post=self._events.put_nowait,
            status=self.raft.status,
            membership=lambda: self._membership,
        )
        server.add_generic_rpc_handlers((service.handler(),))
        port = bind_grpc(server, self.config.api_address, "placement API", self.config.tls)
        await server.start()
        self._server = server
        self._tasks = [
            asyncio.create_task(self._control(), name="placement-control"),
            asyncio.create_task(self._ticker(), name="placement-ticker"),
        ]
        self._events.put_nowait(RaftChanged(self.raft.status()))
        log.info(
            "placement node %s serving on %s (raft %s)",
            self.config.node_id,
            self.config.api_address,
            self.config.raft_address,
        )
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.raft.close)

    # ---- bridges from pysyncobj's tick thread

    def _from_tick_thread_membership(self, state: Membership) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._events.put_nowait, MembershipApplied(state))

    def _from_tick_thread_status(self, status: RaftStatus) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._events.put_nowait, RaftChanged(status))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)  # a clock: drives timeouts, waits on nothing
            self._events.put_nowait(TickIn())

    # ---- the control loop

    async def _control(self) -> None:
        while True:
            event = await self._events.get()
            try:
                self._handle(event)
            except Exception:
                log.exception("placement control loop failed on %r", type(event).__name__)

    def _handle(self, event: Event) -> None:
        now = time.monotonic()
        match event:
            case StreamOpened(stream, reply):
                reply.set_result(self._open(stream, now))
            case StreamClosed(stream):
                self._closed(stream, now)
            case ReportIn(stream, report):
                self._report(stream, report, now)
            case MembershipApplied(state):
                self._applied(state, now)
            case RaftChanged(status):
                self._raft_changed(status, now)
            case TickIn():
                self._tick(now)
            case ProposalDone():
                self._proposing = False
            case _:
                raise TypeError(f"unknown placement event {event!r}")
        self._flush_proposals()

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send():
                    self._send(effect)
                case Evict(hosts):
                    for name in hosts:
                        self._remove_later(name, 0.0, RemoveReason.UNACKED)
                        stream = self._streams.get(name)
                        if stream is not None:
                            stream.close(
                                grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no acknowledgement within {self.config.ack_timeout_s}s",
                            )
                case Refuse(host, reason):
                    stream = self._streams.get(host)
                    if stream is not None:
                        stream.close(grpc.StatusCode.FAILED_PRECONDITION, reason)
                case RoundCompleted():
                    self.rounds.append(effect)
                    self._prune_versions()
                    log.info(
                        "round v%d term %d done: %d hosts in %d ms%s",
                        effect.version,
                        effect.term,
                        effect.hosts,
                        effect.finished_ms - effect.started_ms,
                        " (catch-up)" if effect.catch_up else "",
                    )
                case _:
                    raise TypeError(f"unknown dissemination effect {effect!r}")

    def _feed(self, event: Any, now: float) -> None:
        self._run(self._diss.handle(event, int(now * 1000)))

    # ---- leadership

    def _raft_changed(self, status: RaftStatus, now: float) -> None:
        leads = status.role is Role.LEADER
        if self._term and (not leads or status.term != self._term):
            self._lose_leadership(
                f"leadership moved (now {status.role.name.lower()} in term {status.term}, "
                f"leader {status.leader or 'unknown'})"
            )
        if leads and status.has_quorum and self._term != status.term:
            self._term = status.term
            self._propose(ms.leader_command(status.term, _wall_ms()))
        if self._leading or leads:
            return
        # A follower: sidecars that reached us go to the leader.
        for stream in list(self._streams.values()):
            stream.close(grpc.StatusCode.UNAVAILABLE, "not the leader")

    def _lose_leadership(self, why: str) -> None:
        log.warning(
            "placement node %s stops leading term %d: %s", self.config.node_id, self._term, why
        )
        self._term, self._leading = 0, False
        self._held.clear()
        self._pending.clear()
        self._feed(LeadershipLost(), time.monotonic())
        for stream in list(self._streams.values()):
            stream.close(grpc.StatusCode.UNAVAILABLE, "not the leader any more")

    def _applied(self, state: Membership, now: float) -> None:
        self._membership = state
        self._by_version[state.version] = state
        if not self._term:
            return
        if not self._leading and state.leader_term == self._term:
            self._leading = True
            self._feed(LeadershipGained(self._term), now)
            # Hosts of the table that have not reconnected get the host timeout to do so.
            for name in state.hosts.keys() - self._streams.keys():
                self._remove_later(name, self.config.host_timeout_s, RemoveReason.EXPIRED)
        if self._leading:
            self._feed(TableCommitted(state.version, frozenset(state.hosts)), now)

    def _prune_versions(self) -> None:
        # Bases of deltas: what connected hosts hold. Older ones fall back to full tables.
        held = [s.held_version for s in self._streams.values() if s.held_version]
        keep = min([self._diss.delivered_version, *held])
        for version in [v for v in self._by_version if v < keep]:
            del self._by_version[version]

    # ---- streams

    def _open(self, stream: HostStream, now: float) -> tuple[grpc.StatusCode, str] | bytes | None:
        if not self._term:
            return encode_not_leader(self.config.api_address_of(self.raft.leader_address))
        current = self._streams.get(stream.name)
        if current is not None and current.closing is None:
            return (grpc.StatusCode.ALREADY_EXISTS, f"host {stream.name!r} is already connected")
        self._streams[stream.name] = stream
        stream.last_seen = now
        self._pending.reconnected(stream.name)
        self._want(stream.record)
        self._feed(HostConnected(stream.name), now)
        return None

    def _closed(self, stream: HostStream, now: float) -> None:
        if self._streams.get(stream.name) is not stream:
            return
        del self._streams[stream.name]
        self._pending.disconnected(stream.name)
        self._feed(HostDisconnected(stream.name), now)
        if stream.left:
            self._remove_later(stream.name, 0.0, RemoveReason.LEFT)
        elif self._term:
            self._remove_later(stream.name, self.config.drop_grace_s, RemoveReason.DISCONNECTED)

    def _report(self, stream: HostStream, report: pb.HostReport, now: float) -> None:
        if self._streams.get(stream.name) is not stream:
            return
        stream.last_seen = now
        kind = report.WhichOneof("kind")
        if kind == "status":
            try:
                record = validate_report(
                    report, self.config.max_actor_types, self.config.max_name_length
                )
            except InvalidHostError as exc:
                stream.close(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                return
            if record.name != stream.name:
                stream.close(grpc.StatusCode.INVALID_ARGUMENT, "a stream cannot change its name")
                return
            stream.record = record
            self._want(record)
        elif kind == "ack":
            ack = report.ack
            if ack.operation not in (1, 2, 3):
                stream.close(grpc.StatusCode.INVALID_ARGUMENT, "ack: unknown operation")
                return
            op = Operation(ack.operation)
            if op is Operation.UPDATE and stream.closing is None:
                stream.held_version = ack.version
            self._feed(AckReceived(stream.name, op, ack.version, ack.term), now)
        elif kind == "leave":
            stream.left = True
            stream.close(grpc.StatusCode.OK, "left")
        else:
            stream.close(grpc.StatusCode.INVALID_ARGUMENT, "empty report")

    def _send(self, send: Send) -> None:
        self._held.append(send)
        self._release_held()

    def _release_held(self) -> None:
        lost = self._held.release(self.raft.fence, self._deliver)
        if lost is not None:
            self._lose_leadership(f"not the leader of term {lost} any more")

    def _deliver(self, send: Send) -> None:
        streams = [s for s in map(self._streams.get, send.hosts) if s is not None]
        if send.operation is not Operation.UPDATE:
            self._queue(streams, encode_order(send.operation, send.version, send.term))
            return
        for group, data in encode_update(
            send, self._by_version, streams, self.config.virtual_nodes
        ):
            self._queue(group, data)

    def _queue(self, streams: list[HostStream], data: bytes) -> None:
        for stream in streams:
            stream.outbox.put_nowait(data)
        self.bytes_sent += len(data) * len(streams)

    # ---- expiry and proposals

    def _tick(self, now: float) -> None:
        self._release_held()
        if self._term:
            timeout = self.config.host_timeout_s
            for stream in list(self._streams.values()):
                if now - stream.last_seen > timeout and stream.closing is None:
                    stream.close(grpc.StatusCode.DEADLINE_EXCEEDED, f"no heartbeat in {timeout}s")
                    self._remove_later(stream.name, 0.0, RemoveReason.EXPIRED)
            self._pending.expire(now, self._streams, self._membership.hosts)
        self._feed(Tick(), now)

    def _remove_later(self, name: str, delay_s: float, reason: RemoveReason) -> None:
        self._pending.remove_later(name, time.monotonic() + delay_s, reason)

    def _want(self, record: HostRecord) -> None:
        self._pending.want(record, self._membership.hosts)

    def _flush_proposals(self) -> None:
        if self._proposing or not self._leading:
            return
        raw = self._pending.next_command(_wall_ms())
        if raw is not None:
            self._propose(raw)

    def _propose(self, raw: dict[str, Any]) -> None:
        self._proposing = True

        async def propose() -> None:
            try:
                await self.raft.propose(command_for(raw), timeout=PROPOSAL_TIMEOUT_S)
            except RaftError as exc:
                log.warning("placement proposal %s failed: %s", raw.get("op"), exc)
            finally:
                self._events.put_nowait(ProposalDone())

        asyncio.get_running_loop().create_task(propose())
