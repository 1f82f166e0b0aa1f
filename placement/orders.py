"""Orders the placement leader holds back while its term has no recent quorum.

The control loop (placement/server.py) hands every order of a round through
`HeldOrders`, which lets them out, oldest first, only while Raft says this node still
leads their term with a quorum. Kept apart from the loop because waiting out a quorum
gap, rather than dropping every stream, is a rule with its own state (see `release`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from placement.dissemination import Send
from raftkit.node import Fence

log = logging.getLogger(__name__)


class HeldOrders:
    """Orders of the led term not sent yet, in order, and when the gap holding them began."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._orders: deque[Send] = deque()
        self._gap_since: float | None = None

    def __len__(self) -> int:
        return len(self._orders)

    def append(self, send: Send) -> None:
        self._orders.append(send)

    def clear(self) -> None:
        self._orders.clear()
        self._gap_since = None

    def release(self, fence: Callable[[int], Fence], deliver: Callable[[Send], None]) -> int | None:
        """Deliver the held orders, oldest first, while this node leads their term with a
        recent quorum; return the term of an order whose leadership is lost (the caller
        gives the leadership up and clears), else None.

        In a quorum gap (still the leader of the term, but no follower answered within
        the quorum window: on a busy machine, a follower late by a few hundred ms) they
        wait, the hosts' streams kept, and the tick releases them once the quorum is back;
        if the gap lasts, Raft ends the term (`leader_fallback_timeout`) and the
        leadership is given up as for any other change of role or term. Dropping every
        stream at the first gap made every sidecar reconnect, and lock its table if that
        took over a second (bench/RESULTS.md, placement)."""
        while self._orders:
            send = self._orders[0]
            state = fence(send.term)
            if state is Fence.LOST:
                return send.term
            if state is Fence.GAP:
                if self._gap_since is None:
                    self._gap_since = time.monotonic()
                    log.warning("placement node %s: no recent quorum in term %d; orders wait",
                                self._node_id, send.term)  # fmt: skip
                return None  # a quorum gap: the tick tries again
            if self._gap_since is not None:
                log.warning("placement node %s: quorum back after %d ms; %d orders go out",
                            self._node_id, (time.monotonic() - self._gap_since) * 1000,
                            len(self._orders))  # fmt: skip
                self._gap_since = None
            self._orders.popleft()
            deliver(send)
        return None
