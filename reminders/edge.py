"""The gRPC edge of a reminders node: the `Reminders` service's handlers.

- Reads (Get, List) are served by the leader only: simple and consistent (a follower's
  replica may lag). Writes and reads on a follower answer FAILED_PRECONDITION with the
  leader's API address in the `actorflow-leader` trailing metadata (UNAVAILABLE when no
  leader is known); `reminders.client` follows it.
- WatchTriggers: the first message must be `subscribe`; a node that does not lead with a
  quorum answers one `TriggerBatch` with `not_leader` and ends the stream. The handler only
  puts events on the dispatcher's queue and writes what it queued: every decision stays
  with the firing loop.

Kept out of `reminders.server` so the wire handling reads apart from the node's lifecycle.
This module is the only place that maps errors to gRPC status codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
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
from raftkit.node import RaftNode, Role
from raftkit.outbox import OutboxWriter
from raftkit.wire import Malformed, first_request, lenient, refusal, unary_handler
from reminders import convert
from reminders.api.v1 import reminders_pb2 as pb
from reminders.batcher import CreateBatcher
from reminders.config import RemindersConfig
from reminders.errors import InvalidReminderError
from reminders.errors import NotLeaderError as ApiNotLeaderError
from reminders.firing import Dispatcher
from reminders.firing_events import (
    AckIn,
    Clock,
    Subscriber,
    SubscriberClosed,
    SubscriberOpened,
)
from reminders.names import LEADER_METADATA_KEY, SERVICE
from reminders.replica import Replica

__all__ = ["LEADER_METADATA_KEY", "SERVICE", "RemindersService"]

T = TypeVar("T")


class RemindersService:
    def __init__(
        self,
        config: RemindersConfig,
        *,
        clock: Clock,
        raft: RaftNode,
        replica: Replica,
        dispatcher: Dispatcher,
        batcher: CreateBatcher,
    ) -> None:
        """The node's parts, shared with it: creates go through `batcher`, deletes straight
        to `raft`, reads to `replica` (leader only), trigger streams to `dispatcher`."""
        self.config = config
        self.clock = clock
        self.raft = raft
        self.replica = replica
        self.dispatcher = dispatcher
        self.batcher = batcher

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

    def handler(self) -> grpc.GenericRpcHandler:
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
