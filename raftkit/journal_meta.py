"""`JournalMeta`: a `DurableJournal`'s current term, vote and commit index, and their file.

Raft's safety argument needs a granted vote to survive a crash, so the file is replaced
atomically and durably (temporary name, fsync, rename, directory fsync) before
pysyncobj sends the vote request or grant. Kept apart from `raftkit.journal` because it
has its own file and format and takes no part in the log's group commit.

Format: msgpack `{"v", "term", "voted_for", "commit"}` in `<journal>.meta`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from raftkit.codec import pack, unpack
from raftkit.errors import CodecError, JournalError
from raftkit.journal_file import fsync_directory

__all__ = ["JournalMeta"]

_META_VERSION = 1


class JournalMeta:
    """Not thread-safe: like the journal, used from pysyncobj's tick thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fields = _load(path)
        self._stored_commit = int(self._fields["commit"])

    @property
    def term(self) -> int:
        return int(self._fields["term"])

    @property
    def voted_for(self) -> str | None:
        voted: str | None = self._fields["voted_for"]
        return voted

    @property
    def commit(self) -> int:
        return int(self._fields["commit"])

    @commit.setter
    def commit(self, index: int) -> None:
        self._fields["commit"] = index

    def vote(self, term: int, voted_for: str | None) -> None:
        """Record the term and vote in memory; `store` makes them durable."""
        self._fields["term"] = term
        self._fields["voted_for"] = voted_for

    def needs_store(self, synced_index: int) -> bool:
        return self._commit_to_store(synced_index) != self._stored_commit

    def store(self, synced_index: int) -> None:
        """Replace the file atomically and durably. An `OSError` is the caller's: only
        the journal knows that it must then refuse all further work."""
        fields = dict(self._fields)
        fields["commit"] = self._commit_to_store(synced_index)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(pack(fields))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_directory(self.path.parent)
        self._stored_commit = fields["commit"]

    def _commit_to_store(self, synced_index: int) -> int:
        # Never claim to have committed an entry this node might not have on disk.
        return min(int(self._fields["commit"]), max(synced_index, 1))


def _load(path: Path) -> dict[str, Any]:
    fields: dict[str, Any] = {"v": _META_VERSION, "term": 0, "voted_for": None, "commit": 1}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return fields
    try:
        stored = unpack(raw)
    except CodecError as exc:
        raise JournalError(f"unreadable journal meta {path}: {exc}") from None
    if not isinstance(stored, dict) or stored.get("v") != _META_VERSION:
        raise JournalError(f"unknown journal meta format in {path}")
    fields.update(stored)
    return fields
