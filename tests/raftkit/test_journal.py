"""DurableJournal: what is synced survives a reopen, one sync covers many appends, the
pysyncobj truncation quirk does not drop acknowledged entries."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from raftkit import DurableJournal, JournalError
from raftkit import journal as journal_module

pytestmark = pytest.mark.timeout(30)


class CountingSync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fdatasync(fd)


def _entries(first: int, count: int, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(f"cmd-{i}".encode() * (i % 5 + 1), i, term) for i in range(first, first + count)]


def _journal(path: Path) -> tuple[DurableJournal, CountingSync]:
    sync = CountingSync()
    return DurableJournal(path, sync_fn=sync), sync


def test_entries_written_then_reopened_are_all_there(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal, _ = _journal(path)
    entries = _entries(1, 200)
    for entry in entries:
        journal.add(*entry)
    journal.setCurrentTerm(7, "127.0.0.1:9000")
    journal.setRaftCommitIndex(150)
    journal.sync()
    journal.onOneSecondTimer()
    journal._destroy()

    reopened, _ = _journal(path)
    assert [reopened[i] for i in range(len(reopened))] == entries
    assert reopened[-1] == entries[-1]
    assert reopened[10:12] == entries[10:12]
    assert reopened.getCurrentTerm() == 7
    assert reopened.getVotedForNodeId() == "127.0.0.1:9000"
    assert reopened.getRaftCommitIndex() == 150


def test_one_sync_covers_every_append_since_the_last(tmp_path: Path) -> None:
    journal, sync = _journal(tmp_path / "raft.journal")
    rounds, per_round = 10, 50
    for r in range(rounds):
        for entry in _entries(1 + r * per_round, per_round):
            journal.add(*entry)
        assert journal.dirty
        assert journal.sync()
        assert not journal.dirty
        assert not journal.sync()  # nothing new: no syscall
    assert sync.calls == rounds
    assert journal.sync_count == rounds
    assert journal.synced_index == rounds * per_round


def test_unsynced_appends_are_not_on_disk_and_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal, _ = _journal(path)
    for entry in _entries(1, 10):
        journal.add(*entry)
    journal.sync()
    for entry in _entries(11, 5):
        journal.add(*entry)  # buffered only: a crash now loses them, unacknowledged
    size_synced = path.stat().st_size
    os.close(journal._fd)  # crash: no flush, no destroy
    with open(path, "ab") as f:  # and a half-written record after the synced ones
        f.write(b"\x40\x00\x00\x00garbage")

    reopened, _ = _journal(path)
    assert len(reopened) == 10
    assert reopened[-1] == _entries(10, 1)[0]
    assert path.stat().st_size == size_synced
    reopened.add(*_entries(11, 1)[0])
    reopened.sync()
    reopened._destroy()
    assert len(_journal(path)[0]) == 11


def test_resent_equal_entries_are_kept_without_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal, sync = _journal(path)
    entries = _entries(1, 20)
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    # pysyncobj: an append_entries with prevLogIdx 10 carrying entries 11..15 only.
    journal.deleteEntriesFrom(10)
    for entry in entries[10:15]:
        journal.add(*entry)
    assert len(journal) == 15
    assert journal.appended_count == 20  # nothing rewritten
    journal.sync()  # the non-conflicting rest (16..20) is kept, as Raft requires
    assert [journal[i] for i in range(len(journal))] == entries
    assert sync.calls == 2
    journal._destroy()
    assert len(_journal(path)[0]) == 20


def test_conflicting_entry_drops_the_rest_durably(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal, _ = _journal(path)
    old = _entries(1, 20, term=1)
    for entry in old:
        journal.add(*entry)
    journal.sync()
    journal.deleteEntriesFrom(10)
    new = _entries(11, 3, term=2)
    journal.add(*old[10])  # index 11 equal
    journal.add(*new[1])  # index 12 from term 2: conflict
    journal.add(*new[2])
    journal.sync()
    expected = [*old[:11], *new[1:]]
    assert [journal[i] for i in range(len(journal))] == expected
    journal._destroy()
    reopened, _ = _journal(path)
    assert [reopened[i] for i in range(len(reopened))] == expected


def test_compaction_and_clear_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal, _ = _journal(path)
    entries = _entries(1, 30)
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    journal.deleteEntriesTo(25)  # list position: keep entries 26..30
    journal.add(*_entries(31, 1)[0])
    journal.sync()
    journal._destroy()
    reopened, _ = _journal(path)
    assert [reopened[i] for i in range(len(reopened))] == [*entries[25:], *_entries(31, 1)]
    reopened.clear()
    reopened.add(b"dump-prev", 40, 3)
    reopened.add(b"dump-last", 41, 3)
    reopened.sync()
    reopened._destroy()
    again, _ = _journal(path)
    assert [again[0], again[1]] == [(b"dump-prev", 40, 3), (b"dump-last", 41, 3)]
    assert len(again) == 2


def test_interrupted_compaction_is_completed_from_the_dump(tmp_path: Path) -> None:
    journal, _ = _journal(tmp_path / "raft.journal")
    entries = _entries(1, 30)
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    # The dump was stored at entries 19/20, the crash came before the compaction.
    journal.align_to_dump(entries[18], entries[19])
    assert journal[0] == entries[18]
    assert len(journal) == 12  # entries after the dump are kept


def test_failed_sync_refuses_all_further_work(tmp_path: Path) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    journal = DurableJournal(tmp_path / "raft.journal", sync_fn=broken)
    journal.add(b"x", 1, 1)
    with pytest.raises(JournalError):
        journal.sync()
    assert journal.failed is not None
    with pytest.raises(JournalError):
        journal.sync()  # never "succeeds" on retry
    with pytest.raises(JournalError):
        journal.add(b"y", 2, 1)


def test_the_failure_is_told_once_before_the_error(tmp_path: Path) -> None:
    """`on_fail` lets a server exit on the failure (a node that refuses all work would
    otherwise live on); it is told once, with what failed."""
    told: list[BaseException] = []

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    journal = DurableJournal(tmp_path / "raft.journal", sync_fn=full, on_fail=told.append)
    journal.add(b"x", 1, 1)
    with pytest.raises(JournalError):
        journal.sync()
    assert len(told) == 1 and isinstance(told[0], OSError) and told[0].errno == 28
    with pytest.raises(JournalError):
        journal.sync()
    assert len(told) == 1


def test_a_compaction_failing_after_the_close_never_closes_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename fails once the old file is closed: the journal refuses all work, and
    its close must not close that descriptor number again, which another file may hold
    by then."""
    journal, _ = _journal(tmp_path / "raft.journal")
    for entry in _entries(1, 10):
        journal.add(*entry)
    journal.sync()

    def no_rename(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", no_rename)
        with pytest.raises(JournalError):
            journal.deleteEntriesTo(5)
    assert journal.failed is not None
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o600)  # the lowest free number
    try:
        journal.close()
        os.fstat(other)  # still open
    finally:
        os.close(other)


def test_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"PYSYNCOBJ" + b"\0" * 64)
    with pytest.raises(JournalError, match="not a raftkit journal"):
        DurableJournal(path)


def test_a_slow_sync_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync holds the tick thread (a leader's heartbeats with it): one slower than
    `SLOW_SYNC_S` leaves a warning, a quick one nothing (a fake clock the sync moves)."""
    now = [100.0]
    monkeypatch.setattr(journal_module, "_monotonic", lambda: now[0])
    delays = [0.001, journal_module.SLOW_SYNC_S + 0.05]

    def sync(fd: int) -> None:
        os.fdatasync(fd)
        now[0] += delays.pop(0)

    journal = DurableJournal(tmp_path / "raft.journal", sync_fn=sync)
    with caplog.at_level(logging.WARNING, logger="raftkit.journal"):
        journal.add(b"a", 1, 1)
        journal.sync()
        assert not caplog.records
        journal.add(b"b", 2, 1)
        journal.sync()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["journal: writing and syncing took 250 ms"]
    journal.close()
