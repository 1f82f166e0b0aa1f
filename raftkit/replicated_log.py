"""`ReplicatedLog`: the pysyncobj `SyncObj` subclass behind `RaftNode`.

- One replicated entry point, `_raftkit_apply(payload)`, carrying msgpack bytes. pysyncobj
  numbers replicated methods by sorted name, so adding a second one would renumber the
  log of an older release; commands are dispatched on their `kind` instead.
- The apply callback also gets the entry's Raft index and term (read from the journal
  at `raftLastApplied + 1`, which is the entry pysyncobj is applying), so state
  machines can stamp versions and terms without reading any clock, and fenced commands
  can be rejected identically on every replica.
- Full dumps go through pysyncobj's `serializer`/`deserializer` hooks: the file is
  `raftkit.codec.Dump` msgpack holding the state machine's own snapshot bytes (pysyncobj
  would pickle the object's fields). The dump is fsynced before pysyncobj renames it;
  the journal compaction that follows fsyncs the directory. On load the dump is fsynced
  again (a follower receiving a snapshot writes it without fsync) before the journal is
  cleared, and an interrupted compaction is completed (`DurableJournal.align_to_dump`).
- `_onTick` releases held acknowledgements (journal sync first) before pysyncobj's tick
  runs: the leader's self-count in the commit computation then covers synced entries
  only. After a journal failure the node stops ticking (fail-stop).
- Limit: with `useFork=False` the dump is written on the tick thread, so Raft pauses
  for `snapshot()` plus the write. Fine for placement and reminder tables (KB to MB).
- The tick thread normally stops when the thread that built the SyncObj exits; it is
  tied to the main thread instead, so a node may be started from any thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from raftkit.auth import HmacSealer
from raftkit.codec import Dump, LogEntry, decode_dump, encode_dump
from raftkit.config import RaftConfig
from raftkit.errors import JournalError
from raftkit.journal import DurableJournal, fsync_directory, injected_journal
from raftkit.transport import RaftkitTransport

__all__ = ["ApplyEntry", "ReplicatedLog"]

logger = logging.getLogger(__name__)

# (payload, index, term) -> result handed to the proposer's callback.
ApplyEntry = Callable[[bytes, int, int], object]

_F = TypeVar("_F", bound=Callable[..., Any])

if TYPE_CHECKING:

    class _SyncObjBase:
        """The part of pysyncobj's SyncObj that raftkit relies on."""

        raftLastApplied: int
        raftCommitIndex: int
        raftCurrentTerm: int
        _SyncObj__raftLog: Any
        _SyncObj__raftState: int
        _SyncObj__lastResponseTime: dict[Any, float]
        _SyncObj__transport: Any
        _SyncObj__mainThread: threading.Thread

        def __init__(
            self,
            selfNode: str,
            otherNodes: list[str],
            conf: Any = None,
            *,
            transportClass: Any = None,
        ) -> None: ...
        def _onTick(self, timeToWait: float = 0.0) -> None: ...
        def _isLeader(self) -> bool: ...
        def _getLeader(self) -> Any: ...
        def isReady(self) -> bool: ...
        def addOnTickCallback(self, callback: Callable[[], None]) -> None: ...
        def destroy_synchronous(self) -> None: ...
        def tick_thread_alive(self) -> bool: ...
        def waitBinded(self) -> None: ...
        @property
        def otherNodes(self) -> set[Any]: ...

    def _replicated(func: _F) -> _F: ...

else:
    from pysyncobj import SyncObj as _SyncObjBase
    from pysyncobj import replicated as _replicated


class ReplicatedLog(_SyncObjBase):
    def __init__(
        self,
        config: RaftConfig,
        *,
        apply_entry: ApplyEntry,
        snapshot: Callable[[], bytes],
        restore: Callable[[bytes], None],
        journal: DurableJournal | None,
        sealer: HmacSealer | None,
    ) -> None:
        # Attributes set before SyncObj.__init__ are not part of pysyncobj's own state.
        self._raftkit_apply_entry = apply_entry
        self._raftkit_snapshot = snapshot
        self._raftkit_restore = restore
        self._raftkit_journal = journal
        self._raftkit_transport: RaftkitTransport | None = None
        conf = config.to_syncobj_conf(serializer=self._write_dump, deserializer=self._read_dump)
        transport_class = functools.partial(
            self._make_transport,
            journal=journal,
            sealer=sealer,
            keepalive_s=config.connection_timeout_s / 4,
        )
        staging = injected_journal(journal) if journal is not None else contextlib.nullcontext()
        with staging:
            super().__init__(
                config.self_address, list(config.partners), conf, transportClass=transport_class
            )
        self._SyncObj__mainThread = threading.main_thread()

    def _make_transport(
        self,
        sync_obj: Any,
        self_node: Any,
        other_nodes: Any,
        *,
        journal: DurableJournal | None,
        sealer: HmacSealer | None,
        keepalive_s: float,
    ) -> RaftkitTransport:
        transport = RaftkitTransport(
            sync_obj, self_node, other_nodes, journal=journal, sealer=sealer,
            keepalive_s=keepalive_s,
        )  # fmt: skip
        self._raftkit_transport = transport
        return transport

    def submit(self, payload: bytes, callback: Callable[[object, int | None], None]) -> None:
        """Queue `payload` for replication; pysyncobj calls `callback(result, fail_reason)`
        on its tick thread (or at once, from this thread, when its queue is full)."""
        cast(Any, self)._raftkit_apply(payload, callback=callback)

    @_replicated
    def _raftkit_apply(self, payload: bytes) -> object:
        index = self.raftLastApplied + 1
        return self._raftkit_apply_entry(payload, index, self._entry_term(index))

    def _entry_term(self, index: int) -> int:
        log = self._SyncObj__raftLog
        entry = cast(LogEntry, log[index - log[0][1]])
        # INVARIANT: pysyncobj applies the entry at raftLastApplied + 1.
        if entry[1] != index:
            raise AssertionError(f"log entry {entry[1]} found where {index} was expected")
        return entry[2]

    def _onTick(self, timeToWait: float = 0.0) -> None:
        transport = self._raftkit_transport
        if transport is not None:
            try:
                transport.release()
            except JournalError:
                time.sleep(timeToWait)  # fail-stop: no more acknowledgements nor commits
                return
        super()._onTick(timeToWait)

    # -- full dump hooks (called on the tick thread) -----------------------------------

    def _write_dump(self, file_name: str, raft_data: Any) -> None:
        last, prev, cluster = raft_data
        dump = Dump(
            last=_log_entry(last),
            prev=_log_entry(prev),
            cluster=tuple(sorted(str(getattr(n, "id", n)) for n in cluster)),
            state=self._raftkit_snapshot(),
        )
        with open(file_name, "wb") as f:
            f.write(encode_dump(dump))
            f.flush()
            os.fsync(f.fileno())

    def _read_dump(self, file_name: str) -> tuple[LogEntry, LogEntry, list[str]]:
        try:
            with open(file_name, "rb") as f:
                data = f.read()
                os.fsync(f.fileno())
            fsync_directory(Path(file_name).parent)
            dump = decode_dump(data)
            if self._raftkit_journal is not None:
                self._raftkit_journal.align_to_dump(dump.prev, dump.last)
            self._raftkit_restore(dump.state)
            logger.info("loaded the full dump at index %d (term %d)", dump.last[1], dump.last[2])
        except Exception:
            logger.critical("cannot load the full dump %s", file_name, exc_info=True)
            raise
        return (dump.last, dump.prev, list(dump.cluster))


def _log_entry(raw: Any) -> LogEntry:
    command, index, term = raw
    data = command if isinstance(command, bytes) else str(command).encode("utf-8")
    return (data, int(index), int(term))
