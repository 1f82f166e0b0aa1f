"""Keeping every Raft command below pysyncobj's chunking threshold.

pysyncobj 0.3.17 sends an entry of `appendEntriesBatchSizeBytes` (64 KiB) or more in
chunks, and decides which chunk is the last by comparing with the length of the raw
entry instead of its pickled form, so the follower may unpickle a truncated entry; it
then fails on every tick and stops following (seen here with 1000-reminder creates).
raftkit does not expose that option, so this service never proposes a command whose
payload reaches `MAX_COMMAND_BYTES`: batches are cut by encoded size.
"""

from __future__ import annotations

from raftkit.codec import pack

__all__ = ["MAX_COMMAND_BYTES", "MAX_ITEM_BYTES", "item_size"]

MAX_COMMAND_BYTES = 56 * 1024
# One item must fit in a command with room for the envelope.
MAX_ITEM_BYTES = MAX_COMMAND_BYTES - 1024


def item_size(item: object) -> int:
    return len(pack(item))
