"""One reminders node: Raft replica, firing loop and the gRPC edge.

- Registration is group-committed: concurrent CreateReminder/CreateReminders calls are
  validated and planned on arrival (the proposer stamps `now_ms`), then folded into one
  `create` Raft command while the previous one is in flight (`CreateBatcher`). raftkit's
  journal syncs the entry to disk on a majority before `propose` returns, so an
  acknowledged registration is durable.
- Reads (Get, List) are served by the leader only: simple and consistent (a follower's
  replica may lag). Writes and reads on a follower answer FAILED_PRECONDITION with the
  leader's API address in the `actorflow-leader` trailing metadata (UNAVAILABLE when no
  leader is known); `reminders.client` follows it.
- WatchTriggers: the first message must be `subscribe`; a node that does not lead with a
  quorum answers one `TriggerBatch` with `not_leader` and ends the stream.

This module is the only place that maps errors to gRPC status codes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from raftkit.codec import Command
from raftkit.errors import (
    CommandRejectedError,
    NotLeaderError,
    QueueFullError,
    RaftError,
    RaftTimeoutError,
    UnknownOutcomeError,
)
from raftkit.listen import EXCLUSIVE_PORT, bind_grpc
from raftkit.node import RaftNode, Role
from raftkit.outbox import OutboxWriter
from raftkit.service import KEEPALIVE_SERVER_OPTIONS
from raftkit.wire import Malformed, first_request, lenient, refusal, unary_handler
from reminders import convert
from reminders.api.v1 import reminders_pb2 as pb
from reminders.config import RemindersConfig
from reminders.errors import InvalidReminderError
from reminders.errors import NotLeaderError as ApiNotLeaderError
from reminders.firing import (
    AckIn,
    ChangesIn,
    Clock,
    Dispatcher,
    RaftChanged,
    Subscriber,
    SubscriberClosed,
    SubscriberOpened,
    SystemClock,
)
from reminders.machine import Change, CreateItem, Key, Row, StoredList
from reminders.replica import Replica
from reminders.sizing import MAX_COMMAND_BYTES, MAX_ITEM_BYTES, item_size

__all__ = ["LEADER_METADATA_KEY", "SERVICE", "CreateBatcher", "RemindersNode"]

log = logging.getLogger(__name__)

SERVICE = "actorflow.reminders.v1.Reminders"
LEADER_METADATA_KEY = "actorflow-leader"
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _CreateCall:
    """One API call's creates; may be spread over several commands (size limit)."""

    items: list[CreateItem]
    sizes: list[int]
    fut: asyncio.Future[StoredList]
    results: list[tuple[Key, Row] | None] = field(default_factory=list)
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.items)


class CreateBatcher:
    """Group commit: creates that arrive while a proposal is in flight share the next one.

    A command holds at most `max_items` creates and stays below `MAX_COMMAND_BYTES`
    (see `reminders.sizing`), so a large CreateReminders call may take several."""

    def __init__(self, raft: RaftNode, clock: Clock, max_items: int, timeout_s: float) -> None:
        self._raft = raft
        self._clock = clock
        self._max_items = max_items
        self._timeout_s = timeout_s
        # (call, index of the next item to propose)
        self._pending: collections.deque[tuple[_CreateCall, int]] = collections.deque()
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self.commands = 0

    async def create(self, items: list[CreateItem]) -> StoredList:
        sizes = [item_size(item) for item in items]
        for i, size in enumerate(sizes):
            if size > MAX_ITEM_BYTES:
                raise InvalidReminderError(
                    "data", f"reminder {i} encodes to {size} bytes, over {MAX_ITEM_BYTES}"
                )
        loop = asyncio.get_running_loop()
        call = _CreateCall(items, sizes, loop.create_future())
        self._pending.append((call, 0))
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return await call.fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._propose(self._take())
        finally:
            self._draining = False

    def _take(self) -> list[tuple[_CreateCall, int]]:
        taken: list[tuple[_CreateCall, int]] = []
        used = 0
        while self._pending and len(taken) < self._max_items:
            call, index = self._pending[0]
            size = call.sizes[index]
            if taken and used + size > MAX_COMMAND_BYTES:
                break
            taken.append((call, index))
            used += size
            if index + 1 < len(call.items):
                self._pending[0] = (call, index + 1)
            else:
                self._pending.popleft()
        return taken

    async def _propose(self, taken: list[tuple[_CreateCall, int]]) -> None:
        items = [call.items[index] for call, index in taken]
        body = {"now_ms": self._clock.wall_ms(), "items": items}
        self.commands += 1
        try:
            result = await self._raft.propose(Command("create", body), timeout=self._timeout_s)
        except RaftError as exc:
            failed = {id(call): call for call, _ in taken}
            self._pending = collections.deque(
                entry for entry in self._pending if id(entry[0]) not in failed
            )
            for call in failed.values():
                if not call.fut.done():
                    call.fut.set_exception(exc)
            return
        pairs = result.pairs() if isinstance(result, StoredList) else []
        for (call, index), value in zip(taken, pairs, strict=True):
            call.results[index] = value
            call.done += 1
            if call.done == len(call.items) and not call.fut.done():
                call.fut.set_result(StoredList([r for r in call.results if r is not None]))


class RemindersNode:
    def __init__(
        self,
        config: RemindersConfig,
        clock: Clock | None = None,
        *,
        on_journal_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_journal_failure`: see `RaftNode` (the server process exits there)."""
        self.config = config
        self.clock = clock or SystemClock()
        self.replica = Replica()
        self.raft = RaftNode(
            config.raft_config(), self.replica, on_journal_failure=on_journal_failure
        )
        self.dispatcher = Dispatcher(config, self.replica, self.raft, self.clock)
        self.batcher = CreateBatcher(
            self.raft, self.clock, config.create_batch, config.proposal_timeout_s
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        post = self.dispatcher.post

        def on_changes(seq: int, changes: list[Change] | None) -> None:  # tick thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(post, ChangesIn(seq, changes))

        self.replica.set_hook(on_changes)
        self.raft.add_listener(lambda status: _threadsafe(loop, lambda: post(RaftChanged(status))))
        await asyncio.to_thread(self.raft.start)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                *KEEPALIVE_SERVER_OPTIONS,
                EXCLUSIVE_PORT,
            ]
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        self.port = bind_grpc(server, self.config.api_address, "reminders API", self.config.tls)
        await server.start()
        self._server = server
        self._task = loop.create_task(self.dispatcher.run(), name="reminders-dispatcher")
        post(RaftChanged(self.raft.status()))
        log.info(
            "reminders node %s serving on %s (raft %s)",
            self.config.node_id,
            self.config.api_address,
            self.config.raft_address,
        )
        return self.port

    async def stop(self, grace_s: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace=grace_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.replica.set_hook(None)
        await asyncio.to_thread(self.raft.close)

    async def wait_stopped(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ---- the error edge ----------------------------------------------------------------------

    async def _guard(self, context: grpc.aio.ServicerContext[Any, Any], call: Awaitable[T]) -> T:
        try:
            return await call
        except InvalidReminderError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ApiNotLeaderError as exc:
            await self._abort_not_leader(context, exc.leader_hint)
        except NotLeaderError as exc:
            await self._abort_not_leader(context, self.config.api_address_of(exc.leader_hint))
        except (RaftTimeoutError, UnknownOutcomeError) as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"outcome unknown, retry (creates are idempotent): {exc}",
            )
        except QueueFullError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except CommandRejectedError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, str(exc))
        except RaftError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable: abort raises")

    async def _abort_not_leader(
        self, context: grpc.aio.ServicerContext[Any, Any], hint: str | None
    ) -> None:
        if hint is None or hint == self.config.api_address:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader known, retry")
        context.set_trailing_metadata(((LEADER_METADATA_KEY, hint),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"not the leader; leader: {hint}")

    def _require_leader(self) -> None:
        if self.raft.leader_term() is None:
            raise ApiNotLeaderError(self.config.api_address_of(self.raft.leader_address))

    # ---- unary RPCs ---------------------------------------------------------------------------

    async def _create_one(
        self, request: pb.CreateReminderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateReminderResponse:
        async def run() -> pb.CreateReminderResponse:
            _, item = convert.plan_create(
                request,
                self.clock.wall_ms(),
                max_data_bytes=self.config.max_data_bytes,
                max_key_part_length=self.config.max_key_part_length,
            )
            ((key, row),) = (await self.batcher.create([item])).pairs()
            return pb.CreateReminderResponse(reminder=convert.row_to_proto(key, row))

        return await self._guard(context, run())

    async def _create_many(
        self, request: pb.CreateRemindersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateRemindersResponse:
        async def run() -> pb.CreateRemindersResponse:
            now_ms = self.clock.wall_ms()
            items = [
                convert.plan_create(
                    r,
                    now_ms,
                    max_data_bytes=self.config.max_data_bytes,
                    max_key_part_length=self.config.max_key_part_length,
                    prefix=f"reminders[{i}].",
                )[1]
                for i, r in enumerate(request.reminders)
            ]
            if len(items) > self.config.create_batch:
                raise InvalidReminderError(
                    "reminders", f"at most {self.config.create_batch} reminders per call"
                )
            created = (await self.batcher.create(items)).pairs() if items else []
            return pb.CreateRemindersResponse(
                reminders=[convert.row_to_proto(key, row) for key, row in created]
            )

        return await self._guard(context, run())

    async def _get(
        self, request: pb.GetReminderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Reminder:
        async def run() -> pb.Reminder:
            key = convert.validate_key(request.key, self.config.max_key_part_length)
            self._require_leader()
            stored = self.replica.lookup(key)
            if stored is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no reminder {'/'.join(key)}")
            assert stored is not None
            return convert.stored_to_proto(stored)

        return await self._guard(context, run())

    async def _list(
        self, request: pb.ListRemindersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListRemindersResponse:
        async def run() -> pb.ListRemindersResponse:
            limit = self.config.max_key_part_length
            ns = convert.validate_name(request.namespace, "namespace", limit)
            app = convert.validate_name(request.app_id, "app_id", limit)
            if request.actor_id and not request.actor_type:
                raise InvalidReminderError("actor_type", "actor_type is required with actor_id")
            if request.page_size > convert.MAX_PAGE_SIZE:
                raise InvalidReminderError(
                    "page_size", f"page_size must be at most {convert.MAX_PAGE_SIZE}"
                )
            after = convert.decode_page_token(request.continuation_token)
            self._require_leader()
            found = self.replica.select(ns, app, request.actor_type, request.actor_id)
            if after is not None:
                found = [s for s in found if s.key > after]
            size = request.page_size or convert.DEFAULT_PAGE_SIZE
            page = found[:size]
            token = convert.encode_page_token(page[-1].key) if len(found) > size else ""
            return pb.ListRemindersResponse(
                reminders=[convert.stored_to_proto(s) for s in page], continuation_token=token
            )

        return await self._guard(context, run())

    async def _delete(
        self, request: pb.DeleteReminderRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteReminderResponse:
        async def run() -> pb.DeleteReminderResponse:
            key = convert.validate_key(request.key, self.config.max_key_part_length)
            result = await self.raft.propose(
                Command("delete", {"keys": [list(key)]}), timeout=self.config.proposal_timeout_s
            )
            existed = bool(result[0]) if isinstance(result, list) and result else False
            return pb.DeleteReminderResponse(existed=existed)

        return await self._guard(context, run())

    async def _info(
        self, request: pb.GetRemindersInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemindersInfo:
        status = self.raft.status()
        return pb.RemindersInfo(
            node_id=self.config.node_id,
            is_leader=status.role is Role.LEADER,
            leader_address=self.config.api_address_of(status.leader) or "",
            term=status.term,
            has_quorum=status.has_quorum,
            reminders=len(self.replica),
            subscribers=self.dispatcher.subscriber_count,
        )

    # ---- the trigger stream ---------------------------------------------------------------------

    async def _watch(
        self,
        requests: AsyncIterator[pb.TriggerStreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        first = await first_request(requests, context, "WatchTriggers", pb.TriggerStreamRequest)
        if first is None:
            return
        sub = await self._subscriber(first, context)
        sub.handler = asyncio.current_task()
        reply: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        post = self.dispatcher.post
        post(SubscriberOpened(sub, reply))
        writer: OutboxWriter | None = None
        try:
            # From here the dispatcher may close the subscriber (cancelling this task)
            # at any await, the reply's included: every way out goes through finally.
            term = await reply
            if term is None or term < first.subscribe.known_term:
                sub.handler = None  # the write below must not be cut short (raftkit.outbox)
                # Closed before the write, so that no firing is routed to it meanwhile
                # (the finally's second SubscriberClosed is a no-op).
                post(SubscriberClosed(sub))
                await context.write(self._not_leader_batch())
                return
            writer = OutboxWriter(context, sub.outbox)
            async for message in requests:
                if isinstance(message, Malformed):
                    sub.close(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        refusal("WatchTriggers", pb.TriggerStreamRequest, message),
                    )
                    break
                if message.WhichOneof("kind") != "ack":
                    sub.close(grpc.StatusCode.INVALID_ARGUMENT, "only acks may follow subscribe")
                    break
                ack = message.ack
                post(AckIn(sub, ack.term, tuple(ack.delivered), tuple(ack.failed)))
        except asyncio.CancelledError:
            if sub.closing is None:
                raise
        finally:
            sub.handler = None  # leaving: a close from now on only sets the status
            post(SubscriberClosed(sub))
            if writer is not None:
                await writer.stop()
        if sub.closing is not None and sub.closing[0] is not grpc.StatusCode.OK:
            await context.abort(*sub.closing)

    async def _subscriber(
        self, first: pb.TriggerStreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Subscriber:
        if first.WhichOneof("kind") != "subscribe":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be subscribe"
            )
        s = first.subscribe
        limit = self.config.max_key_part_length
        try:
            host = convert.validate_name(s.host, "subscribe.host", limit)
            ns = convert.validate_name(s.namespace, "subscribe.namespace", limit)
            app = convert.validate_name(s.app_id, "subscribe.app_id", limit)
            types = frozenset(
                convert.validate_name(t, "subscribe.actor_types", limit) for t in s.actor_types
            )
        except InvalidReminderError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return Subscriber(host=host, app=(ns, app), actor_types=types)

    def _not_leader_batch(self) -> bytes:
        hint = self.config.api_address_of(self.raft.leader_address) or ""
        if hint == self.config.api_address:
            hint = ""
        batch = pb.TriggerBatch(term=self.raft.term, not_leader=pb.NotLeader(leader_address=hint))
        return batch.SerializeToString()

    def _handlers(self) -> grpc.GenericRpcHandler:
        unary: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]] = {
            "CreateReminder": (
                self._create_one, pb.CreateReminderRequest, pb.CreateReminderResponse
            ),
            "CreateReminders": (
                self._create_many, pb.CreateRemindersRequest, pb.CreateRemindersResponse
            ),
            "GetReminder": (self._get, pb.GetReminderRequest, pb.Reminder),
            "ListReminders": (self._list, pb.ListRemindersRequest, pb.ListRemindersResponse),
            "DeleteReminder": (self._delete, pb.DeleteReminderRequest, pb.DeleteReminderResponse),
            "GetRemindersInfo": (self._info, pb.GetRemindersInfoRequest, pb.RemindersInfo),
        }  # fmt: skip
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                **{name: unary_handler(name, *spec) for name, spec in unary.items()},
                "WatchTriggers": grpc.stream_stream_rpc_method_handler(
                    self._watch,
                    request_deserializer=lenient(pb.TriggerStreamRequest),
                    response_serializer=None,  # batches are encoded once, in the loop
                ),
            },
        )


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn)
