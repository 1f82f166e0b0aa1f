"""Telling the operator that work waits for an app that is not there.

Each sidecar runs the workflows and activities placement gives it on the app connected to
it (Dapr pairs them one to one). With no app connected, that work waits in the sidecar's
queues, durable and unharmed, but nothing runs it: a sidecar started without its app, or
whose app died for good, looks healthy while its share of the workflows stands still.
`AppWait` is the pure part: fed the queues' sizes now and then, it says when to warn
(the work has waited `warn_after_s` with no app, then again every `repeat_s`) and when to
say that it is over (an app connected). The sidecar's loop does the feeding and logging.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AppWait", "Notice"]


@dataclass(frozen=True, slots=True)
class Notice:
    warning: bool  # False: the wait is over
    message: str


@dataclass(slots=True)
class AppWait:
    warn_after_s: float = 10.0
    repeat_s: float = 60.0
    _since: float | None = None  # when work was first seen waiting with no app
    _warned_at: float | None = None

    def observe(self, now: float, connections: int, turns: int, activities: int) -> Notice | None:
        """What to log, if anything, given the app connections and the queued work now."""
        if connections or not (turns or activities):
            notice = None
            if self._warned_at is not None:
                notice = Notice(False, "an app connected; the work that waited goes to it")
                if not connections:
                    notice = Notice(False, "no work waits for an app any more")
            self._since = self._warned_at = None
            return notice
        if self._since is None:
            self._since = now
        waited = now - self._since
        if waited < self.warn_after_s:
            return None
        if self._warned_at is not None and now - self._warned_at < self.repeat_s:
            return None
        self._warned_at = now
        return Notice(
            True,
            f"{turns} workflow turn(s) and {activities} activity(ies) have waited "
            f"{waited:.0f}s: no app is connected to this sidecar to run them",
        )
