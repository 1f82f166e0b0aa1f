"""Clients of the reminders service: the API (`RemindersClient`) and the trigger stream
(`TriggerSubscriber`), both following the Raft leader across a list of node addresses.

Leader following. Every node knows the others' API addresses. A follower answers API
calls with FAILED_PRECONDITION and the leader's address in the `actorflow-leader`
trailing metadata, and a trigger stream with one `not_leader` batch; the clients go
there next. UNAVAILABLE (no leader yet, node down) moves on to the next address after a
short backoff, until the call's deadline.

Term fencing. `TriggerSubscriber` remembers the highest Raft term of any batch it
accepted and sends it in `subscribe.known_term`; it refuses (does not deliver nor
acknowledge) a batch from an older term, counting it in `refused_batches` and
`refused_triggers`. A deposed leader that still believes it leads can therefore not
reach the actors once the subscriber has heard from its successor. Refused in a row
for `regression_grace_s` by a service at an older term (the leader itself refusing the
known term, or its batches), the subscriber takes the service to have gone back in time
(restored from an older copy, or started empty): it adopts the older term, counts it in
`regressions`, and awaits `on_regress(old_term, new_term)`, since timers armed after
that copy are missing (`raftkit.regression`).

Delivery. `handler(term, triggers)` is awaited once per batch; it returns None (all
delivered) or one boolean per trigger (False: failed, the service retries it with
backoff); raising fails the whole batch. The acknowledgement follows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from raftkit.regression import REGRESSION_GRACE_S, Regression
from raftkit.service import KEEPALIVE_CLIENT_OPTIONS
from raftkit.tls import TlsFiles
from raftkit.tls import channel as tls_channel
from reminders.api.v1 import reminders_pb2 as pb
from reminders.names import LEADER_METADATA_KEY, SERVICE

__all__ = [
    "RECONNECT_MAX_S",
    "RemindersClient",
    "SubscriberStats",
    "TriggerHandler",
    "TriggerSubscriber",
]

log = logging.getLogger(__name__)

# A subscriber's longest pause between attempts while no leader answers. After a leader
# SIGKILL the new leader was ready to fire 1.2-1.3 s later; with pauses growing to 1 s
# the subscriber came back at 1.55 or 2.55 s (its attempts at 0.05, 0.15, 0.35, 0.75,
# 1.55, 2.55 s after the kill), and firing resumed only then. An attempt is one stream
# to one node, answered at once: five a second per sidecar is no load.
RECONNECT_MAX_S = 0.25
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    *KEEPALIVE_CLIENT_OPTIONS,
]

R = TypeVar("R")
TriggerHandler = Callable[[int, list[pb.Trigger]], Awaitable[Sequence[bool] | None]]
RegressHook = Callable[[int, int], Awaitable[None]]


def _leader_hint(error: grpc.aio.AioRpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == LEADER_METADATA_KEY:
            return value if isinstance(value, str) else value.decode()
    return None


class _Channels:
    """One channel per node address, and which node is believed to lead."""

    def __init__(self, addresses: Sequence[str], tls: TlsFiles | None = None) -> None:
        if not addresses:
            raise ValueError("at least one reminders node address is needed")
        self.addresses = list(addresses)
        self._tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._rotation = itertools.cycle(self.addresses)
        self.leader: str | None = None

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = tls_channel(address, self._tls, _CHANNEL_OPTIONS)
            self._channels[address] = channel
        return channel

    def next_address(self) -> str:
        return self.leader or next(self._rotation)

    def moved(self, hint: str | None) -> None:
        self.leader = hint

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


class RemindersClient:
    """Create, get, list and delete reminders on whichever node leads."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout_s: float = 10.0,
        retry_min_s: float = 0.05,
        retry_max_s: float = 0.5,
        max_batch: int = 1000,
        attempt_timeout_s: float = 2.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self._channels = _Channels(addresses, tls)
        self._timeout_s = timeout_s
        # One attempt on one node: a node cut off by the network answers nothing, and
        # the call must move on to another while its overall deadline still allows.
        self._attempt_timeout_s = attempt_timeout_s
        self._max_batch = max_batch
        self._creates: list[tuple[pb.CreateReminderRequest, asyncio.Future[pb.Reminder]]] = []
        self._creating = False
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s

    async def close(self) -> None:
        await self._channels.close()

    async def __aenter__(self) -> RemindersClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create(
        self,
        key: pb.ReminderKey,
        *,
        due_time: str = "",
        period: str = "",
        ttl: str = "",
        data: bytes = b"",
    ) -> pb.Reminder:
        """Create (or replace) one reminder. Concurrent calls are folded into one
        CreateReminders call while another is in flight (client-side group commit)."""
        request = pb.CreateReminderRequest(
            key=key, due_time=due_time, period=period, ttl=ttl, data=data
        )
        fut: asyncio.Future[pb.Reminder] = asyncio.get_running_loop().create_future()
        self._creates.append((request, fut))
        if not self._creating:
            self._creating = True
            asyncio.get_running_loop().create_task(self._drain_creates())
        return await fut

    async def _drain_creates(self) -> None:
        try:
            while self._creates:
                batch = self._creates[: self._max_batch]
                del self._creates[: self._max_batch]
                await self._send_creates(batch)
        finally:
            self._creating = False

    async def _send_creates(
        self, batch: list[tuple[pb.CreateReminderRequest, asyncio.Future[pb.Reminder]]]
    ) -> None:
        try:
            if len(batch) == 1:
                reply = await self._call("CreateReminder", batch[0][0], pb.CreateReminderResponse)
                results = [reply.reminder]
            else:
                results = await self.create_many([request for request, _ in batch])
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.INVALID_ARGUMENT and len(batch) > 1:
                # One bad request must not fail its neighbours: send each on its own.
                await asyncio.gather(*(self._send_creates([entry]) for entry in batch))
                return
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), reminder in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(reminder)

    async def create_many(self, requests: Sequence[pb.CreateReminderRequest]) -> list[pb.Reminder]:
        message = pb.CreateRemindersRequest(reminders=list(requests))
        reply = await self._call("CreateReminders", message, pb.CreateRemindersResponse)
        return list(reply.reminders)

    async def get(self, key: pb.ReminderKey) -> pb.Reminder:
        return await self._call("GetReminder", pb.GetReminderRequest(key=key), pb.Reminder)

    async def list_page(self, request: pb.ListRemindersRequest) -> pb.ListRemindersResponse:
        return await self._call("ListReminders", request, pb.ListRemindersResponse)

    async def list_all(
        self, namespace: str, app_id: str, actor_type: str = "", actor_id: str = ""
    ) -> AsyncIterator[pb.Reminder]:
        token = ""
        while True:
            page = await self.list_page(
                pb.ListRemindersRequest(
                    namespace=namespace,
                    app_id=app_id,
                    actor_type=actor_type,
                    actor_id=actor_id,
                    page_size=1000,
                    continuation_token=token,
                )
            )
            for reminder in page.reminders:
                yield reminder
            token = page.continuation_token
            if not token:
                return

    async def delete(self, key: pb.ReminderKey) -> bool:
        reply = await self._call(
            "DeleteReminder", pb.DeleteReminderRequest(key=key), pb.DeleteReminderResponse
        )
        return reply.existed

    async def info(self, address: str, timeout_s: float = 2.0) -> pb.RemindersInfo:
        """One node's view (no leader following)."""
        method = self._channels.get(address).unary_unary(
            f"/{SERVICE}/GetRemindersInfo",
            request_serializer=pb.GetRemindersInfoRequest.SerializeToString,
            response_deserializer=pb.RemindersInfo.FromString,
        )
        reply: pb.RemindersInfo = await method(pb.GetRemindersInfoRequest(), timeout=timeout_s)
        return reply

    async def _call(self, name: str, request: Any, response_type: type[R]) -> R:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        delay_s = self._retry_min_s
        while True:
            address = self._channels.next_address()
            method = self._channels.get(address).unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_type.FromString,  # type: ignore[attr-defined]
            )
            remaining = deadline - loop.time()
            try:
                attempt_s = max(0.05, min(remaining, self._attempt_timeout_s))
                reply: R = await method(request, timeout=attempt_s)
                return reply
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                # Retrying is safe: creates are idempotent by key, deletes by nature.
                retryable = code in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not retryable or loop.time() >= deadline:
                    raise
                hint = _leader_hint(exc) if code is grpc.StatusCode.FAILED_PRECONDITION else None
                self._channels.moved(hint)
                if hint is not None:
                    continue  # straight to the leader
            # Retry pacing while no leader is known: a deliberate backoff, not a wait.
            await asyncio.sleep(min(delay_s, max(0.0, deadline - loop.time())))
            delay_s = min(self._retry_max_s, delay_s * 2)


@dataclass(slots=True)
class SubscriberStats:
    batches: int = 0
    triggers: int = 0
    refused_batches: int = 0
    refused_triggers: int = 0
    connects: int = 0
    regressions: int = 0  # times the service was followed back to an older term
    terms: dict[int, int] = field(default_factory=dict)  # triggers delivered per term


class TriggerSubscriber:
    """A sidecar's trigger stream: subscribe on the leader, deliver, acknowledge.

    Between attempts it waits `retry_min_s`, doubling up to `retry_max_s`: short, since
    firing resumes only when a subscriber finds the new leader (see RECONNECT_MAX_S)."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        host: str,
        namespace: str,
        app_id: str,
        actor_types: Sequence[str] = (),
        handler: TriggerHandler,
        retry_min_s: float = 0.05,
        retry_max_s: float = RECONNECT_MAX_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tls: TlsFiles | None = None,
        regression_grace_s: float = REGRESSION_GRACE_S,
        on_regress: RegressHook | None = None,
    ) -> None:
        self._channels = _Channels(addresses, tls)
        self._regression = Regression(regression_grace_s)
        self._on_regress = on_regress
        self._sleep = sleep  # the reconnect pacing (tests record it)
        self._subscribe = pb.Subscribe(
            host=host, namespace=namespace, app_id=app_id, actor_types=list(actor_types)
        )
        self._handler = handler
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self.highest_term = 0
        self.stats = SubscriberStats()
        self.address: str | None = None

    async def run(self) -> None:
        """Stay subscribed until cancelled."""
        delay_s = self._retry_min_s
        try:
            while True:
                address = self._channels.next_address()
                self.address = address
                try:
                    delivered = await self._session(address)
                except grpc.aio.AioRpcError as exc:
                    log.debug("trigger stream to %s ended: %s", address, exc.code())
                    self._channels.moved(None)
                    delivered = False
                if delivered:
                    delay_s = self._retry_min_s
                if self._channels.leader is not None and self._channels.leader != address:
                    continue  # redirected: go at once
                # Reconnect pacing: a deliberate backoff between attempts, not a wait.
                await self._sleep(delay_s)
                delay_s = min(self._retry_max_s, delay_s * 2)
        finally:
            await self._channels.close()

    async def _session(self, address: str) -> bool:
        """One stream; True if it delivered anything."""
        call = self._channels.get(address).stream_stream(
            f"/{SERVICE}/WatchTriggers",
            request_serializer=pb.TriggerStreamRequest.SerializeToString,
            response_deserializer=pb.TriggerBatch.FromString,
        )()
        delivered = False
        try:
            subscribe = pb.Subscribe()
            subscribe.CopyFrom(self._subscribe)
            subscribe.known_term = self.highest_term
            await call.write(pb.TriggerStreamRequest(subscribe=subscribe))
            self.stats.connects += 1
            while True:
                batch = await call.read()
                if batch is grpc.aio.EOF:
                    self._channels.moved(None)
                    return delivered
                assert isinstance(batch, pb.TriggerBatch)
                if batch.HasField("not_leader"):
                    hint = batch.not_leader.leader_address or None
                    if hint is None and batch.term < self.highest_term:
                        await self._older(batch.term)
                    self._channels.moved(hint)
                    return delivered
                self._channels.moved(address)
                if await self._deliver(call, batch):
                    delivered = True
        finally:
            call.cancel()

    async def _older(self, term: int) -> None:
        """Refused for an older `term`: follow the service there once that has lasted."""
        if not self._regression.refused(time.monotonic()):
            return
        old, self.highest_term = self.highest_term, term
        self.stats.regressions += 1
        log.warning(
            "reminders went back to term %d (this subscriber saw term %d) for %.3gs: "
            "restored from an older copy or started empty; following it",
            term, old, self._regression.grace_s,
        )  # fmt: skip
        if self._on_regress is not None:
            await self._on_regress(old, term)

    async def _deliver(self, call: Any, batch: pb.TriggerBatch) -> bool:
        triggers = list(batch.triggers)
        if batch.term < self.highest_term:
            self.stats.refused_batches += 1
            self.stats.refused_triggers += len(triggers)
            await self._older(batch.term)
            return False
        self._regression.accepted()
        self.highest_term = batch.term
        try:
            outcome = await self._handler(batch.term, triggers)
        except Exception:
            log.exception("trigger handler failed; %d triggers fail", len(triggers))
            outcome = [False] * len(triggers)
        if outcome is None:
            delivered, failed = [t.fire_id for t in triggers], []
        else:
            delivered = [t.fire_id for t, ok in zip(triggers, outcome, strict=True) if ok]
            failed = [t.fire_id for t, ok in zip(triggers, outcome, strict=True) if not ok]
        self.stats.batches += 1
        self.stats.triggers += len(delivered)
        self.stats.terms[batch.term] = self.stats.terms.get(batch.term, 0) + len(delivered)
        ack = pb.TriggerAck(term=batch.term, delivered=delivered, failed=failed)
        with contextlib.suppress(asyncio.InvalidStateError):
            await call.write(pb.TriggerStreamRequest(ack=ack))
        return True
