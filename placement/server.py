"""One placement node: Raft, the host streams, and the leader's control loop.

The control loop owns everything mutable (streams, the dissemination machine, pending
proposals) and consumes one queue of small events: stream handlers, the Raft tick thread
(through `call_soon_threadsafe`) and a ticker only put events on it. Membership changes
are proposed in batches, one proposal in flight at a time (group commit); the round
machine's effects are carried out here, each step fenced by the Raft term it was decided
under. This module is also the gRPC edge: it alone maps placement errors to status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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
from placement.errors import InvalidHostError
from placement.machine import MembershipMachine, command_for
from placement.membership import HostRecord, Membership, RemoveReason
from placement.streams import (
    HostStream,
    delta_proto,
    encode_not_leader,
    encode_order,
    table_proto,
    validate_report,
)
from raftkit.errors import RaftError
from raftkit.listen import EXCLUSIVE_PORT, bind_grpc
from raftkit.node import Fence, RaftNode, RaftStatus, Role
from raftkit.outbox import OutboxWriter
from raftkit.service import KEEPALIVE_SERVER_OPTIONS
from raftkit.wire import Malformed, first_request, lenient, refusal, unary_handler

log = logging.getLogger(__name__)

SERVICE = "actorflow.placement.v1.Placement"
PROPOSAL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream: HostStream
    reply: asyncio.Future[tuple[grpc.StatusCode, str] | bytes | None]


@dataclass(frozen=True, slots=True)
class StreamClosed:
    stream: HostStream


@dataclass(frozen=True, slots=True)
class ReportIn:
    stream: HostStream
    report: pb.HostReport


@dataclass(frozen=True, slots=True)
class MembershipApplied:
    state: Membership


@dataclass(frozen=True, slots=True)
class RaftChanged:
    status: RaftStatus


@dataclass(frozen=True, slots=True)
class TickIn:
    pass


@dataclass(frozen=True, slots=True)
class ProposalDone:
    pass


Event = (
    StreamOpened | StreamClosed | ReportIn | MembershipApplied | RaftChanged | TickIn | ProposalDone
)


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
        self._removal_due: dict[str, tuple[float, RemoveReason]] = {}
        self._upserts: dict[str, HostRecord] = {}
        self._removals: dict[str, RemoveReason] = {}
        self._proposing = False
        # Orders of `_term` not sent yet: they wait out a quorum gap, in order (`_send`).
        self._held: deque[Send] = deque()
        self._gap_since: float | None = None  # when the quorum gap that holds them began
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
        server.add_generic_rpc_handlers((self._handlers(),))
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
        self._gap_since = None
        self._upserts.clear()
        self._removals.clear()
        self._removal_due.clear()
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
        self._removal_due.pop(stream.name, None)
        self._removals.pop(stream.name, None)
        self._want(stream.record)
        self._feed(HostConnected(stream.name), now)
        return None

    def _closed(self, stream: HostStream, now: float) -> None:
        if self._streams.get(stream.name) is not stream:
            return
        del self._streams[stream.name]
        self._upserts.pop(stream.name, None)
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
        """Send the held orders, oldest first, while this node leads their term with a
        recent quorum. In a quorum gap (still the leader of the term, but no follower
        answered within the quorum window: on a busy machine, a follower late by a few
        hundred ms) they wait, the hosts' streams kept, and the tick sends them once the
        quorum is back; if the gap lasts, Raft ends the term (`leader_fallback_timeout`)
        and the leadership is given up as for any other change of role or term.
        Dropping every stream at the first gap made every sidecar reconnect, and lock its
        table if that took over a second (bench/RESULTS.md, placement)."""
        while self._held:
            send = self._held[0]
            fence = self.raft.fence(send.term)
            if fence is Fence.LOST:
                self._lose_leadership(f"not the leader of term {send.term} any more")
                return
            if fence is Fence.GAP:
                if self._gap_since is None:
                    self._gap_since = time.monotonic()
                    log.warning("placement node %s: no recent quorum in term %d; orders wait",
                                self.config.node_id, send.term)  # fmt: skip
                return  # a quorum gap: the tick tries again
            if self._gap_since is not None:
                log.warning("placement node %s: quorum back after %d ms; %d orders go out",
                            self.config.node_id, (time.monotonic() - self._gap_since) * 1000,
                            len(self._held))  # fmt: skip
                self._gap_since = None
            self._held.popleft()
            self._deliver(send)

    def _deliver(self, send: Send) -> None:
        streams = [s for s in map(self._streams.get, send.hosts) if s is not None]
        if send.operation is not Operation.UPDATE:
            self._queue(streams, encode_order(send.operation, send.version, send.term))
            return
        state = self._by_version.get(send.version)
        if state is None:
            raise AssertionError(f"no membership recorded for round version {send.version}")
        # Encode once per distinct base: hosts holding a recent table get a delta.
        by_base: dict[int, list[HostStream]] = {}
        for stream in streams:
            by_base.setdefault(stream.held_version, []).append(stream)
        for base_version, group in by_base.items():
            base = self._by_version.get(base_version)
            if base is not None and 0 < base_version < send.version:
                delta = delta_proto(base, state, self.config.virtual_nodes)
                data = encode_order(send.operation, send.version, send.term, delta=delta)
            else:
                table = table_proto(state, send.term, self.config.virtual_nodes)
                data = encode_order(send.operation, send.version, send.term, table=table)
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
            for name, (due, reason) in list(self._removal_due.items()):
                if due <= now and name not in self._streams:
                    del self._removal_due[name]
                    if name in self._membership.hosts:
                        self._removals[name] = reason
        self._feed(Tick(), now)

    def _remove_later(self, name: str, delay_s: float, reason: RemoveReason) -> None:
        due = time.monotonic() + delay_s
        current = self._removal_due.get(name)
        if current is None or due < current[0]:
            self._removal_due[name] = (due, reason)

    def _want(self, record: HostRecord) -> None:
        current = self._membership.hosts.get(record.name)
        if current is None or not current.same_table_entry(record):
            self._upserts[record.name] = record

    def _flush_proposals(self) -> None:
        if self._proposing or not self._leading:
            return
        now = _wall_ms()
        if self._upserts:
            records, self._upserts = list(self._upserts.values()), {}
            self._propose(ms.upsert_command(records, now))
        elif self._removals:
            reason = next(iter(self._removals.values()))
            names = [n for n, r in self._removals.items() if r is reason]
            for n in names:
                del self._removals[n]
            self._propose(ms.remove_command(names, reason, now))

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

    # ---- gRPC

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ReportHost": grpc.stream_stream_rpc_method_handler(
                    self._report_host,
                    request_deserializer=lenient(pb.HostReport),
                    response_serializer=None,  # orders are pre-encoded bytes
                ),
                "GetPlacementInfo": unary_handler(
                    "GetPlacementInfo", self._info, pb.GetPlacementInfoRequest, pb.PlacementInfo
                ),
            },
        )

    async def _report_host(
        self, requests: AsyncIterator[pb.HostReport], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        first = await first_request(requests, context, "ReportHost", pb.HostReport)
        if first is None:
            return
        try:
            record = validate_report(
                first, self.config.max_actor_types, self.config.max_name_length
            )
        except InvalidHostError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        stream = HostStream(record)
        stream.handler = asyncio.current_task()
        reply: asyncio.Future[tuple[grpc.StatusCode, str] | bytes | None]
        reply = asyncio.get_running_loop().create_future()
        self._events.put_nowait(StreamOpened(stream, reply))
        writer: OutboxWriter | None = None
        try:
            # From here the control loop may close the stream (cancelling this task)
            # at any await, the verdict's included: every way out goes through finally.
            verdict = await reply
            if isinstance(verdict, bytes):
                await context.write(verdict)  # not registered: nothing cancels it
                return
            if verdict is not None:
                await context.abort(*verdict)
            writer = OutboxWriter(context, stream.outbox)
            await self._read_reports(stream, requests)
        except asyncio.CancelledError:
            if stream.closing is None:
                raise
        finally:
            stream.handler = None  # leaving: a close from now on only sets the status
            self._events.put_nowait(StreamClosed(stream))
            if writer is not None:
                await writer.stop()
        if stream.closing is not None and stream.closing[0] is not grpc.StatusCode.OK:
            await context.abort(*stream.closing)

    async def _read_reports(self, stream: HostStream, requests: AsyncIterator[Any]) -> None:
        """Hand the stream's reports to the control loop until it ends; one that did not
        parse closes it (INVALID_ARGUMENT)."""
        async for report in requests:
            if isinstance(report, Malformed):
                message = refusal("ReportHost", pb.HostReport, report)
                stream.close(grpc.StatusCode.INVALID_ARGUMENT, message)
                return
            self._events.put_nowait(ReportIn(stream, report))

    async def _info(
        self, request: pb.GetPlacementInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PlacementInfo:
        status = self.raft.status()
        state = self._membership
        return pb.PlacementInfo(
            node_id=self.config.node_id,
            is_leader=status.role is Role.LEADER,
            leader_address=self.config.api_address_of(status.leader) or "",
            term=status.term,
            table_version=state.version,
            hosts=table_proto(state, status.term, self.config.virtual_nodes).hosts,
            has_quorum=status.has_quorum,
        )
