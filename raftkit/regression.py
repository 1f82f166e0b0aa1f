"""`Regression`: tells a deposed leader from a Raft group that went back in time.

Clients of placement and reminders fence by Raft term: they refuse what comes from a
term older than the newest one they have seen, so that a leader deposed by its peers
cannot reach them once its successor has. A deposed leader is gone within seconds: it
steps down when it misses its quorum (pysyncobj's leader fallback, about 1 s).

A group whose data directories were restored from an older copy, or lost and started
empty, also leads at an older term (and, for placement, older table versions), but for
good. Refused for good, its clients would never follow it again: the sidecars' tables
stay locked, or no timer fires, until each sidecar restarts. So a client counts how
long it has been refused in a row: each refusal less than `grace_s` after the one
before, nothing accepted between. Once that has lasted `grace_s` (far longer than a
deposed leader lasts) it gives up its memory of the newer term and follows the group
as it is now. Following a deposed leader by mistake costs little: the newer term comes
back with the next message of the real leader. Pure: the caller passes monotonic
seconds.
"""

from __future__ import annotations

__all__ = ["REGRESSION_GRACE_S", "Regression"]

# Refused this long in a row, a group is taken to have gone back for good.
REGRESSION_GRACE_S = 10.0


class Regression:
    def __init__(self, grace_s: float = REGRESSION_GRACE_S) -> None:
        if grace_s <= 0:
            raise ValueError(f"grace_s must be positive, got {grace_s}")
        self.grace_s = grace_s
        self._since: float | None = None
        self._last = 0.0

    def refused(self, now: float) -> bool:
        """Something from an older term (or table version) was refused at `now`: True
        once refusals in a row have lasted `grace_s` (then it starts over: the caller
        follows the group from here)."""
        if self._since is None or now - self._last >= self.grace_s:
            self._since = now
        self._last = now
        if now - self._since < self.grace_s:
            return False
        self._since = None
        return True

    def accepted(self) -> None:
        """Something at the newest term seen, or a newer one, was taken."""
        self._since = None
