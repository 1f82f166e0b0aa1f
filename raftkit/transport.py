"""`RaftkitTransport`: pysyncobj's TCP transport with two additions.

1. Acknowledgements wait for the journal. A `next_node_idx` message (a follower's answer
   to `append_entries`) is held while the `DurableJournal` has unsynced records, and so
   is every later message, to keep the order per peer. `release()` syncs the journal
   once and then sends everything held (see `raftkit.journal` for where it is called).
   Other messages (the leader's `append_entries`, votes, forwarded commands) go out at
   once: the leader's own write may overlap replication, and term and vote are already
   durable when pysyncobj sends a vote.
2. HMAC frame authentication (`raftkit.auth.HmacSealer`) installed as the connection
   "encryptor" when the configuration asks for it; pysyncobj itself only knows Fernet.
3. Keepalives: every `keepalive_s` each node sends every other one a message pysyncobj
   ignores (an unknown type). pysyncobj closes a connection that has read nothing for
   its connection timeout, and checks that only when it sends: two followers never
   talk while a leader lives, so the first vote request between them after the leader
   died closed their connection instead of arriving, and every failover took a second
   election round (measured: the new leader ready 0.9-1.2 s after a SIGKILL, always in
   the second term after the dead leader's).

pysyncobj builds its transport as `transportClass(syncObj, selfNode, otherNodes)`, so
`RaftkitTransport` is passed as a `functools.partial` carrying the journal and sealer.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from raftkit.auth import HmacSealer
from raftkit.journal import DurableJournal

__all__ = ["RaftkitTransport"]

_ACK = "next_node_idx"
# pysyncobj dispatches on `type` and ignores the types it does not know.
KEEPALIVE: dict[str, str] = {"type": "raftkit_keepalive"}

if TYPE_CHECKING:

    class _TCPTransportBase:
        """The part of pysyncobj's TCPTransport that raftkit relies on."""

        _connections: dict[Any, Any]

        def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None: ...
        def send(self, node: Any, message: Any) -> bool: ...

else:
    from pysyncobj.transport import TCPTransport as _TCPTransportBase


class RaftkitTransport(_TCPTransportBase):
    def __init__(
        self,
        syncObj: Any,
        selfNode: Any,
        otherNodes: Any,
        *,
        journal: DurableJournal | None = None,
        sealer: HmacSealer | None = None,
        keepalive_s: float | None = None,
    ) -> None:
        if sealer is not None:
            # TCPTransport copies `syncObj.encryptor` into each connection it creates,
            # starting in its constructor, so the sealer must be in place before it.
            syncObj._SyncObj__encryptor = sealer
        self._journal = journal
        self._held: collections.deque[tuple[Any, Any]] = collections.deque()
        self.released_batches = 0
        self._keepalive_s = keepalive_s
        self._next_keepalive = 0.0
        super().__init__(syncObj, selfNode, otherNodes)
        if journal is not None:
            # Registered after TCPTransport's own tick callback: runs last before poll.
            syncObj.addOnTickCallback(self.release)
        if keepalive_s is not None:
            syncObj.addOnTickCallback(self.keep_alive)

    def keep_alive(self) -> None:
        """On the tick thread: every `keepalive_s`, a message pysyncobj ignores to each
        connected node, so that no connection goes quiet (see the module docstring)."""
        if self._keepalive_s is None:
            return
        now = time.monotonic()
        if now < self._next_keepalive:
            return
        self._next_keepalive = now + self._keepalive_s
        for node in list(self._connections):
            super().send(node, KEEPALIVE)

    def send(self, node: Any, message: Any) -> bool:
        journal = self._journal
        if journal is not None and (
            self._held
            or (journal.dirty and isinstance(message, dict) and message.get("type") == _ACK)
        ):
            self._held.append((node, message))
            return True
        return super().send(node, message)

    def release(self) -> None:
        """Sync the journal, then send the held messages. A failed sync raises
        `JournalError` and releases nothing: no acknowledgement without durability."""
        journal = self._journal
        if journal is None:
            return
        journal.sync()
        if not self._held:
            return
        self.released_batches += 1
        held, self._held = self._held, collections.deque()
        for node, message in held:
            super().send(node, message)
