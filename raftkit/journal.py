"""`DurableJournal`: a Raft log for pysyncobj that is on disk before it is acknowledged.

Why: pysyncobj's `FileJournal` writes through mmap and never syncs, and its meta file
(term, vote) is replaced without fsync, so a power loss can lose entries this node
already acknowledged, and the vote it already gave. Raft's safety argument assumes that
an acknowledged entry and a granted vote survive.

How it hooks into pysyncobj 0.3.17 (read alongside `pysyncobj/syncobj.py`):

- Choosing the journal. `SyncObj.__init__` calls `createJournal(conf.journalFile)`, a
  name looked up in `pysyncobj.syncobj`; there is no parameter for a journal object.
  `injected_journal(journal)` (`raftkit.journal_hook`) replaces that name (once,
  idempotently) with a wrapper that returns the journal staged by the current thread and
  otherwise defers to pysyncobj's own factory, so other SyncObjs in the process are
  unaffected.
- Appending. `add` only buffers the record (no syscall); `sync` writes every buffered
  record with one `pwrite` and makes them durable with one `fdatasync`: group commit, one
  sync for everything appended since the previous one.
- Follower: before acknowledging. pysyncobj appends the entries of an `append_entries`
  and then immediately sends the `next_node_idx` success reply from the same handler.
  `raftkit.transport.RaftkitTransport` holds every acknowledgement (and anything queued
  behind it) while the journal has unsynced records, and releases them after `sync` at
  the two points of the tick loop that follow message handling: the start of the next
  `_onTick` (`raftkit.replicated_log` overrides it) and the tick callbacks that run just
  before pysyncobj polls its sockets. All the replies to what one poll received are thus
  covered by one sync.
- Leader: before counting itself. pysyncobj counts the leader in the quorum for every
  entry in its log at the top of `_onTick`. The override of `_onTick` syncs first, so
  every entry counted is durable. The leader sends `append_entries` without waiting for
  its own sync (Raft allows the leader's write to overlap replication); the sync happens
  before the next poll, in parallel with the followers' own syncs.
- Term and vote (`setCurrentTerm`) are written to the meta file with fsync of the file
  and of its directory before pysyncobj sends the vote request or grant.
- Truncation. pysyncobj truncates the log after the previous index of *every*
  `append_entries` and then appends what it received, even when the entries are the
  same ones (under load acknowledgements arrive out of order, the leader's next index
  for a follower moves back and it resends; when the removed entries were already
  applied pysyncobj logs CRITICAL "truncating already-applied log entries"). Taken
  literally, a follower would drop entries it had acknowledged until they are resent.
  Raft drops only entries that conflict: `deleteEntriesFrom` sets the suffix aside
  (still on disk), equal entries appended again are taken back without a write, the
  first conflicting one drops the rest durably at once (rare), and a non-conflicting
  remainder is reattached at the next sync. `clear` (snapshot install) is durable at
  once. Compaction (`deleteEntriesTo`) rewrites the file to a temporary name, fsyncs,
  renames and fsyncs the directory. That directory fsync also makes durable the rename
  of the full dump which pysyncobj performed just before (INVARIANT: journal and dump
  live in the same directory, `RaftConfig.data_dir`).
- Commit index: pysyncobj stores it lazily (once a second); it is stored clamped to the
  last synced entry so that a restart never believes it committed what it lost.

Guarantee: once any node acknowledges an entry to the leader, or the leader counts
itself for an entry, the entry is on stable storage (as far as fdatasync is honest).

Remaining limits:
- In a one-node cluster the election's no-op entry can be counted before it is synced
  (pysyncobj elects and counts in the same tick). It carries no command.
- A record that fails its CRC ends the log: the rest is treated as a torn tail from a
  crash and truncated (with a warning). Media corruption in the middle of the log is
  not distinguished from a torn tail.
- After a failed write or fsync the journal refuses all further work (`JournalError`)
  and the node stops acknowledging: an fsync error cannot be retried safely. `on_fail`
  is told first; the placement and reminders servers exit there (status 75), to be
  restarted from what is on disk (`raftkit.node.exit_on_journal_failure`).

Single-threaded by design: pysyncobj calls the journal only from its tick thread.

File layouts: the log's in `raftkit.journal_file`, the meta file's in `raftkit.journal_meta`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from raftkit.codec import LogEntry
from raftkit.errors import JournalError
from raftkit.journal_file import HEADER, RECORD, fsync_directory, open_log, record, write_log
from raftkit.journal_hook import injected_journal
from raftkit.journal_meta import JournalMeta

# `fsync_directory` and `injected_journal` live elsewhere and are re-exported: callers
# see one journal module.
__all__ = ["DurableJournal", "SyncFn", "fsync_directory", "injected_journal"]

logger = logging.getLogger(__name__)

# A sync this slow is logged: it holds the node's tick thread (on a leader, its
# heartbeats too), and one longer than the election timeout can cost the leadership.
SLOW_SYNC_S = 0.2
_monotonic = time.monotonic  # tests replace it

SyncFn = Callable[[int], None]


def _default_sync(fd: int) -> None:
    os.fdatasync(fd)


class DurableJournal:
    """pysyncobj's Journal interface (camelCase names are pysyncobj's), plus `sync`.

    `sync_fn` is the data sync primitive (default `os.fdatasync`); tests pass a counting
    wrapper, benchmarks a no-op to measure the cost of syncing alone.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        sync_fn: SyncFn | None = None,
        on_fail: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_fail` is told of the failure that ends the journal (see `_fail`), once,
        before the `JournalError` is raised: a process can then exit and be restarted
        from what is on disk, instead of living on with a node that refuses all work."""
        self._path = Path(path)
        self._sync_fn: SyncFn = sync_fn or _default_sync
        self._on_fail = on_fail
        self._entries: list[LogEntry] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._pending = bytearray()  # records appended but not yet written
        self._written_end = HEADER.size  # bytes of the file holding records
        self._dirty = False  # something appended or written since the last sync
        self._failed: BaseException | None = None
        self._synced_index = 0
        # Entries pysyncobj removed from the end that no conflicting entry has replaced
        # yet, with their file offsets (see deleteEntriesFrom).
        self._suffix: collections.deque[tuple[LogEntry, int]] = collections.deque()
        self.sync_count = 0
        self.appended_count = 0
        self.readded_count = 0
        self.reattached_count = 0
        self._meta = JournalMeta(self._path.with_name(self._path.name + ".meta"))
        self._fd = self._open_and_recover()

    # -- raftkit API -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def dirty(self) -> bool:
        """True while some appended entry is not yet durable."""
        return self._dirty

    @property
    def synced_index(self) -> int:
        """Raft index of the last entry known to be durable (0 if none)."""
        return self._synced_index

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def sync(self) -> bool:
        """Make everything appended so far durable with one write and one fdatasync.
        Returns whether there was anything to sync."""
        self._check_usable()
        self._reattach_suffix()
        if not self._dirty:
            return False
        started = _monotonic()
        try:
            self._write_pending()
            self._sync_fn(self._fd)
        except OSError as exc:
            self._fail(exc)
        took = _monotonic() - started
        if took > SLOW_SYNC_S:
            logger.warning("journal: writing and syncing took %.0f ms", took * 1000)
        self.sync_count += 1
        self._dirty = False
        self._synced_index = self._entries[-1][1] if self._entries else 0
        return True

    def align_to_dump(self, prev: LogEntry, last: LogEntry) -> None:
        """Finish a compaction that a crash interrupted after the dump was stored: drop
        the entries before `prev` when the journal still holds `prev` and `last` in a row.
        Without this, pysyncobj would clear the whole journal, entries after the dump
        included, on finding its first entry different from the dump's."""
        self._reattach_suffix()
        if len(self._entries) < 2 or self._entries[0] == prev:
            return
        first_index = self._entries[0][1]
        pos = prev[1] - first_index
        if 0 < pos < len(self._entries) - 1 and (
            self._entries[pos] == prev and self._entries[pos + 1] == last
        ):
            logger.warning("journal: completing interrupted compaction up to index %d", prev[1])
            self.deleteEntriesTo(pos)

    def close(self) -> None:
        self._destroy()

    # -- pysyncobj Journal interface ---------------------------------------------------

    def add(self, command: bytes | str, idx: int, term: int) -> None:
        self._check_usable()
        data = command if isinstance(command, bytes) else command.encode("utf-8")
        entry = (data, idx, term)
        if self._suffix:
            if self._suffix[0][0] == entry:  # the same entry again: still on disk
                self._offsets.append(self._suffix.popleft()[1])
                self._entries.append(entry)
                self.readded_count += 1
                return
            self._cut(self._suffix[0][1])  # a real conflict: Raft drops the rest
            self._suffix.clear()
        self._offsets.append(self._written_end + len(self._pending))
        self._pending += record(data, idx, term)
        self._entries.append(entry)
        self._dirty = True
        self.appended_count += 1

    def clear(self) -> None:
        self._check_usable()
        self._suffix.clear()
        self._cut(HEADER.size)
        self._entries.clear()
        self._offsets.clear()
        self._synced_index = 0
        self._dirty = False

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """pysyncobj calls this on every `append_entries` whose previous index is below
        its last entry, matching or not, and then appends the entries it received.
        Raft only drops entries that conflict: the removed suffix is kept aside (and on
        disk); entries appended again that equal it are taken back without a write, the
        first conflicting one drops the rest durably, and whatever is left non-conflicting
        at the next sync is reattached. An acknowledged entry is thus never lost to a
        duplicate or reordered `append_entries`."""
        self._check_usable()
        pos = max(entryFrom, 0)
        if pos >= len(self._entries):
            return
        moved = list(zip(self._entries[pos:], self._offsets[pos:], strict=True))
        self._suffix.extendleft(reversed(moved))
        del self._entries[pos:]
        del self._offsets[pos:]
        self._synced_index = min(self._synced_index, self._entries[-1][1] if self._entries else 0)
        self._dirty = True  # hold acknowledgements until the next sync settles the suffix

    def deleteEntriesTo(self, entryTo: int) -> None:
        self._check_usable()
        self._reattach_suffix()
        kept = self._entries[max(entryTo, 0) :]
        tmp = self._path.with_name(self._path.name + ".compact.tmp")
        try:
            write_log(tmp, kept)
            os.close(self._fd)
            # Closed: should what follows fail, `close` must not close the number again
            # (by then it may be another file's).
            self._fd = -1
            os.replace(tmp, self._path)
            fsync_directory(self._path.parent)
            self._fd = os.open(self._path, os.O_RDWR)
        except OSError as exc:
            self._fail(exc)
        self._entries = []
        self._offsets = []
        self._pending.clear()
        self._written_end = HEADER.size
        for entry in kept:
            self._offsets.append(self._written_end)
            self._written_end += RECORD.size + len(entry[0])
            self._entries.append(entry)
        self.sync_count += 1
        self._dirty = False
        self._synced_index = kept[-1][1] if kept else 0

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self._fd < 0:
            return
        if self._failed is None:
            with contextlib.suppress(JournalError):
                self.sync()
                self._store_meta()
        os.close(self._fd)
        self._fd = -1

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._meta.commit = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        return self._meta.commit

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        self._check_usable()
        self._meta.vote(term, None if votedForNodeId is None else str(votedForNodeId))
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return self._meta.term

    def getVotedForNodeId(self) -> str | None:
        return self._meta.voted_for

    def onOneSecondTimer(self) -> None:
        if self._failed is None and self._meta.needs_store(self._synced_index):
            with contextlib.suppress(JournalError):
                self._store_meta()

    # -- internals ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise JournalError(f"journal {self._path} failed earlier: {self._failed!r}")
        if self._fd < 0:
            raise JournalError(f"journal {self._path} is closed")

    def _fail(self, exc: BaseException) -> NoReturn:
        first = self._failed is None
        self._failed = exc
        logger.critical("journal %s: %r; refusing further work", self._path, exc)
        if first and self._on_fail is not None:
            self._on_fail(exc)
        raise JournalError(f"journal {self._path}: {exc!r}") from exc

    def _write_pending(self) -> None:
        view = memoryview(self._pending)
        while view:
            n = os.pwrite(self._fd, view, self._written_end)
            self._written_end += n
            view = view[n:]
        view.release()
        self._pending.clear()

    def _reattach_suffix(self) -> None:
        if not self._suffix:
            return
        for entry, offset in self._suffix:
            self._entries.append(entry)
            self._offsets.append(offset)
        logger.debug("journal: kept %d non-conflicting entries", len(self._suffix))
        self.reattached_count += len(self._suffix)
        self._suffix.clear()

    def _cut(self, offset: int) -> None:
        """Drop every record from file offset `offset` on; durably if any was written."""
        try:
            if offset >= self._written_end:
                del self._pending[offset - self._written_end :]
                return
            self._pending.clear()
            os.ftruncate(self._fd, offset)
            self._written_end = offset
            self._sync_fn(self._fd)
            self.sync_count += 1
        except OSError as exc:
            self._fail(exc)

    def _store_meta(self) -> None:
        try:
            self._meta.store(self._synced_index)
        except OSError as exc:
            self._fail(exc)

    def _open_and_recover(self) -> int:
        fd, scanned, size = open_log(self._path)
        self._entries, self._offsets = scanned.entries, scanned.offsets
        self._written_end = scanned.end
        if self._written_end < size:
            try:
                logger.warning(
                    "journal %s: dropping %d bytes of torn tail after index %d",
                    self._path,
                    size - self._written_end,
                    self._entries[-1][1] if self._entries else 0,
                )
                os.ftruncate(fd, self._written_end)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
        self._synced_index = self._entries[-1][1] if self._entries else 0
        return fd
