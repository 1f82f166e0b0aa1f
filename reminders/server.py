"""One reminders node: the Raft replica, the firing loop and the gRPC server, started and
stopped together (`RemindersNode`).

The node only wires its parts and runs their lifecycle; the rest lives in:
- `reminders.batcher`: group-committed registration (`CreateBatcher`);
- `reminders.edge`: the gRPC service, leader-only reads, the trigger stream, and the only
  mapping of errors to gRPC status codes;
- `reminders.names`: `SERVICE` and `LEADER_METADATA_KEY`.
Those names are re-exported here, where they were defined before the split.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from raftkit.listen import EXCLUSIVE_PORT, bind_grpc
from raftkit.node import RaftNode
from raftkit.service import KEEPALIVE_SERVER_OPTIONS
from reminders.batcher import CreateBatcher
from reminders.config import RemindersConfig
from reminders.edge import LEADER_METADATA_KEY, SERVICE, RemindersService
from reminders.firing import ChangesIn, Clock, Dispatcher, RaftChanged, SystemClock
from reminders.machine import Change
from reminders.replica import Replica

__all__ = ["LEADER_METADATA_KEY", "SERVICE", "CreateBatcher", "RemindersNode"]

log = logging.getLogger(__name__)


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
        self.service = RemindersService(
            config,
            clock=self.clock,
            raft=self.raft,
            replica=self.replica,
            dispatcher=self.dispatcher,
            batcher=self.batcher,
        )
        self._server: grpc.aio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
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
        server.add_generic_rpc_handlers((self.service.handler(),))
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


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn)
