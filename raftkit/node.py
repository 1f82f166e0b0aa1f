"""`RaftNode`: the thin shell a service puts around its pure state machine.

A service writes a `StateMachine` (pure: `apply(command, entry)` reads no clock and makes
no id, the proposer stamps `now_ms` and ids into the command body; `snapshot`/`restore`
exchange msgpack bytes) and drives it through a `RaftNode`:

    node = RaftNode(config, machine)
    node.start()                                  # binds the port, starts the tick thread
    result = await node.propose(Command("put", {"k": 1, "now_ms": now}), timeout=2.0)
    term = node.leader_term()                     # leader with a recent quorum, else None
    node.ensure_leader(term)                      # fence before a leader-only action

Threads: pysyncobj runs everything on its own tick thread. `StateMachine.apply`, the
snapshot hooks and `add_listener` callbacks run there; they must not block. The
properties can be read from any thread (each is a plain read of pysyncobj's fields).
`propose` and `wait_for` bridge to asyncio with `loop.call_soon_threadsafe`.

Proposals: by default only the leader proposes, and the command is fenced with the term
it leads: if the entry ends up appended in another term (leadership lost and the command
forwarded or re-queued), every replica rejects it alike and the proposer gets
`LeadershipLostError`. With `leader_only=False` a follower forwards to the leader
(pysyncobj's behaviour) and returns what its own replica's `apply` returned.

`apply` also receives the entry's `Entry(index, term)`, identical on every replica:
a deterministic source for versions (the log index) and for the term a decision was
taken in, e.g. a placement table stamped with the term that produced it.

Outcomes: the value `apply` returned; `NotLeaderError` (not applied, retry on the hint);
`RaftTimeoutError` / `UnknownOutcomeError` (may have been applied: make commands
idempotent); `CommandRejectedError` (every replica refused it); `QueueFullError`.

`has_quorum` means: this node leads and heard an answer from a majority (itself
included) within `min(leader_fallback_timeout, election_timeout_min)`. It narrows the
window in which a deposed leader believes it leads; it does not close it (no clock
bounds), so consumers of leader-only decisions also check the Raft term they carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable

from raftkit.auth import HmacSealer
from raftkit.codec import Command, decode_command, encode_command
from raftkit.config import MAX_COMMAND_BYTES, RaftConfig, Security
from raftkit.errors import (
    CodecError,
    CommandTooLargeError,
    LeadershipLostError,
    NotLeaderError,
    RaftError,
    RaftTimeoutError,
)
from raftkit.journal import DurableJournal, SyncFn
from raftkit.machine import Entry, StateMachine
from raftkit.outcome import Fenced, Rejected, fail_threadsafe, settle
from raftkit.replicated_log import ReplicatedLog
from raftkit.status import Fence, RaftStatus, Role, heard_from_majority, leader_of, read_status
from raftkit.watch import StatusFeed

# The values and the contract live in `raftkit.machine` and `raftkit.status`; they are
# re-exported here, where services have always imported them from.
__all__ = [
    "JOURNAL_FAILED_EXIT",
    "Entry",
    "Fence",
    "RaftNode",
    "RaftStatus",
    "Role",
    "StateMachine",
    "exit_on_journal_failure",
]

logger = logging.getLogger(__name__)

# A server whose journal failed exits with this status (EX_TEMPFAIL: try again later):
# systemd and Kubernetes restart it; `actorflow up` reports it and restarts nothing.
JOURNAL_FAILED_EXIT = 75


def exit_on_journal_failure(exc: BaseException) -> None:
    """`RaftNode(on_journal_failure=...)` for a server process: end the process at once.
    A node whose journal failed refuses all work for good (an fsync error cannot be
    retried safely) but would otherwise live on, answering probes; restarted, it
    recovers from what is on disk, and a full disk that was freed meanwhile is usable
    again. No clean shutdown: it would try to write."""
    logger.critical("the Raft journal failed (%r): exiting with status %d, to be restarted "
                    "from what is on disk", exc, JOURNAL_FAILED_EXIT)  # fmt: skip
    logging.shutdown()
    os._exit(JOURNAL_FAILED_EXIT)


class RaftNode:
    def __init__(
        self,
        config: RaftConfig,
        state_machine: StateMachine,
        *,
        sync_fn: SyncFn | None = None,
        on_journal_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`sync_fn` replaces the journal's `os.fdatasync` (tests count calls; benchmarks
        measure the cost of syncing). `on_journal_failure` is called once, from the tick
        thread, when the journal fails for good (a write or a sync refused: a full disk,
        an I/O error); the node then refuses all work, so a server process exits there
        (`exit_on_journal_failure`) and is restarted from what is on disk. Nothing starts
        until `start()`."""
        self._config = config
        self._machine = state_machine
        self._sync_fn = sync_fn
        self._on_journal_failure = on_journal_failure
        self._log: ReplicatedLog | None = None
        self._journal: DurableJournal | None = None
        self._quorum_window_s = min(config.leader_fallback_timeout_s, config.election_timeout_min_s)
        self._lock = threading.Lock()  # guards _inflight
        self._inflight: set[asyncio.Future[object]] = set()
        self._feed = StatusFeed()
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the journal, bind the Raft port and start the tick thread. Blocks until
        the port is bound (at most `bind_retries * bind_retry_s`); raises RaftError.
        A node starts once: after `close()`, build a new one (with a fresh state
        machine, since the log is applied again from the data directory)."""
        if self._started:
            raise RaftError("a RaftNode starts only once")
        self._started = True
        cfg = self._config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if cfg.durable_journal:
            self._journal = DurableJournal(
                cfg.journal_path, sync_fn=self._sync_fn, on_fail=self._on_journal_failure
            )
        sealer = None
        if cfg.password is not None and cfg.security is Security.HMAC:
            sealer = HmacSealer(cfg.password)
        try:
            log = ReplicatedLog(
                cfg,
                apply_entry=self._apply_entry,
                snapshot=self._machine.snapshot,
                restore=self._machine.restore,
                journal=self._journal,
                sealer=sealer,
            )
        except BaseException:
            self.close()
            raise
        self._log = log
        try:
            log.waitBinded()
        except Exception as exc:
            self.close()
            raise RaftError(f"cannot bind the Raft port {cfg.self_address}: {exc!r}") from None
        log.addOnTickCallback(self._on_tick)

    def close(self) -> None:
        """Stop the tick thread and close the journal. Pending proposals fail."""
        log, self._log = self._log, None
        if log is not None:
            log.destroy_synchronous()
        if self._journal is not None:
            self._journal.close()  # no-op when pysyncobj's destroy already closed it
        with self._lock:
            inflight = list(self._inflight)
        for fut in inflight:
            fail_threadsafe(fut, error=RaftError("raft node closed"))

    # -- reading state (any thread) ----------------------------------------------------

    @property
    def config(self) -> RaftConfig:
        return self._config

    @property
    def journal(self) -> DurableJournal | None:
        return self._journal

    @property
    def healthy(self) -> bool:
        """The tick thread runs and the journal has not failed (for health checks)."""
        log = self._log
        if log is None or not log.tick_thread_alive():
            return False
        return self._journal is None or self._journal.failed is None

    @property
    def term(self) -> int:
        return self._require().raftCurrentTerm

    @property
    def role(self) -> Role:
        return Role(self._require()._SyncObj__raftState)

    @property
    def is_leader(self) -> bool:
        return self._require()._isLeader()

    @property
    def leader_address(self) -> str | None:
        return leader_of(self._require())

    @property
    def has_quorum(self) -> bool:
        return heard_from_majority(self._require(), self._quorum_window_s)

    @property
    def last_applied(self) -> int:
        return self._require().raftLastApplied

    @property
    def commit_index(self) -> int:
        return self._require().raftCommitIndex

    @property
    def ready(self) -> bool:
        """Caught up with the leader's commit index once since start."""
        return self._require().isReady()

    def status(self) -> RaftStatus:
        return read_status(self._require(), self._config.self_address, self._quorum_window_s)

    # -- fencing -----------------------------------------------------------------------

    def leader_term(self) -> int | None:
        """The current term if this node leads it with a recent quorum, else None."""
        term = self.term
        if self.is_leader and self.has_quorum and self.term == term:
            return term
        return None

    def fence(self, term: int) -> Fence:
        """Whether a leader-only action on behalf of `term` may go ahead now (HOLDS),
        must wait out a quorum gap (GAP: a busy machine's follower late by a few hundred
        ms; Raft ends the term itself if the gap lasts `leader_fallback_timeout`), or
        belongs to a leadership that is over (LOST)."""
        log = self._require()
        if not log._isLeader() or log.raftCurrentTerm != term:
            return Fence.LOST
        return Fence.HOLDS if heard_from_majority(log, self._quorum_window_s) else Fence.GAP

    def ensure_leader(self, term: int) -> None:
        """Raise LeadershipLostError unless still leader of `term` with a recent quorum.
        Call it right before every leader-only action taken on behalf of `term`."""
        if self.fence(term) is not Fence.HOLDS:
            raise LeadershipLostError(term, self.term, self.leader_address)

    # -- proposing ---------------------------------------------------------------------

    async def propose(
        self, command: Command, *, timeout: float, leader_only: bool = True
    ) -> object:
        """Replicate `command` and return what `StateMachine.apply` returned for it."""
        log = self._require()
        if leader_only:
            term = self.term
            if not self.is_leader or self.term != term:
                raise NotLeaderError(self.leader_address)
            if command.fence_term is None:
                command = Command(command.kind, command.body, fence_term=term)
        payload = encode_command(command)
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandTooLargeError(len(payload), MAX_COMMAND_BYTES)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        with self._lock:
            self._inflight.add(fut)

        def on_result(result: object, error: int | None) -> None:  # tick thread
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                loop.call_soon_threadsafe(settle, fut, result, error, self._hint)

        try:
            log.submit(payload, on_result)
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise RaftTimeoutError(
                f"no outcome within {timeout}s (the command may still commit)"
            ) from None
        finally:
            with self._lock:
                self._inflight.discard(fut)

    def _hint(self) -> str | None:
        log = self._log
        return leader_of(log) if log is not None else None

    # -- applying (tick thread) --------------------------------------------------------

    def _apply_entry(self, payload: bytes, index: int, term: int) -> object:
        try:
            command = decode_command(payload)
        except CodecError as exc:
            logger.error("raft entry %d: undecodable command: %s", index, exc)
            return Rejected(str(exc))
        if command.fence_term is not None and command.fence_term != term:
            return Fenced(command.fence_term, term)
        try:
            return self._machine.apply(command, Entry(index, term))
        except Exception as exc:
            logger.exception(
                "raft entry %d: state machine refused %r",
                index,
                command.kind,
                extra={"raft_index": index, "raft_term": term},
            )
            return Rejected(f"{type(exc).__name__}: {exc}")

    # -- watching ----------------------------------------------------------------------

    def add_listener(self, callback: Callable[[RaftStatus], None]) -> Callable[[], None]:
        """Call `callback(status)` on the tick thread whenever the status changes (role,
        term, leader, quorum, commit or apply progress). Returns an unsubscribe function."""
        return self._feed.add_listener(callback)

    async def wait_for(
        self, predicate: Callable[[RaftStatus], bool], *, timeout: float
    ) -> RaftStatus:
        """Wait until `predicate(status)` holds; re-checked on every status change."""
        return await self._feed.wait_for(self.status, predicate, timeout=timeout)

    def _on_tick(self) -> None:
        log = self._log
        if log is None:
            return
        self._feed.publish(read_status(log, self._config.self_address, self._quorum_window_s))

    def _require(self) -> ReplicatedLog:
        log = self._log
        if log is None:
            raise RaftError("raft node not started (or closed)")
        return log
