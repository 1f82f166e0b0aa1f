"""Raft plumbing shared by the placement and reminders services (pysyncobj underneath).

Kept separate so that `reminders` never imports `placement`.

- `config`: `RaftConfig`, the validated node configuration, and its `SyncObjConf`.
- `node`: `RaftNode` (start/close, term, leadership, quorum, term fencing, asyncio
  `propose` and `wait_for`) around a service's pure `StateMachine`; it re-exports the
  names below from `machine` and `status`.
- `machine`: the contract a service implements, `StateMachine`, and `Entry`.
- `status`: `Role`, `Fence`, `RaftStatus`, read out of pysyncobj's fields.
- `outcome`: how a proposal's future is settled (apply's refusal markers, pysyncobj's
  failure reasons mapped to `RaftError`s).
- `watch`: `StatusFeed`, the node's status listeners and asyncio waiters.
- `codec`: msgpack encodings of commands (`Command`), snapshots and full dumps.
- `journal`: `DurableJournal`, a Raft log that is fsynced (group commit) before any
  acknowledgement; how it hooks into pysyncobj is in its docstring. Beside it:
  `journal_file` (the log file's layout, recovery scan, rewrite), `journal_meta` (term,
  vote and commit index, `JournalMeta`) and `journal_hook` (`injected_journal`, which
  makes pysyncobj use it).
- `transport`: pysyncobj's TCP transport holding acknowledgements until the journal is
  synced, with optional HMAC frame authentication (`auth`).
- `replicated_log`: the pysyncobj `SyncObj` subclass (one msgpack entry point, msgpack
  dumps).
- `peers`: `RAFT=API` peer pairs and the leader's API address.
- `service`: `RaftServiceConfig`, the settings every replicated service node shares.
- `outbox`: `OutboxWriter`, which writes a server stream's queued messages and stops
  without cutting a write short (placement's host streams, reminders' trigger streams).
- `regression`: `Regression`, which tells a client refused by a deposed leader from one
  refused by a group that went back in time (restored from an older copy, or started
  empty).
- `errors`: `RaftError` and its subclasses.
"""

from __future__ import annotations

from raftkit.codec import (
    Command,
    decode_command,
    decode_snapshot,
    encode_command,
    encode_snapshot,
)
from raftkit.config import RaftConfig, Security
from raftkit.errors import (
    CodecError,
    CommandRejectedError,
    CommandTooLargeError,
    ConfigError,
    JournalError,
    LeadershipLostError,
    NotLeaderError,
    QueueFullError,
    RaftError,
    RaftTimeoutError,
    UnknownOutcomeError,
)
from raftkit.journal import DurableJournal
from raftkit.node import (
    JOURNAL_FAILED_EXIT,
    Entry,
    Fence,
    RaftNode,
    RaftStatus,
    Role,
    StateMachine,
    exit_on_journal_failure,
)

__all__ = [
    "JOURNAL_FAILED_EXIT",
    "CodecError",
    "Command",
    "CommandRejectedError",
    "CommandTooLargeError",
    "ConfigError",
    "DurableJournal",
    "Entry",
    "Fence",
    "JournalError",
    "LeadershipLostError",
    "NotLeaderError",
    "QueueFullError",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "RaftStatus",
    "RaftTimeoutError",
    "Role",
    "Security",
    "StateMachine",
    "UnknownOutcomeError",
    "decode_command",
    "decode_snapshot",
    "encode_command",
    "encode_snapshot",
    "exit_on_journal_failure",
]
