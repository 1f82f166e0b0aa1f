"""The time a client's request reached this sidecar, as a name for that request.

An external event a client raises is stamped with `arrival_ns()`: the wall clock to the
nanosecond, strictly later than the stamp before it in this process, and never on a
whole millisecond (events the engine makes itself carry whole milliseconds). So two
requests never share a stamp, and the same request sent again (a router tries a call
once more when the owner died before answering, though it may have saved the event)
carries the same one: the workflow keeps one copy (`sidecar.workflow.intake`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ArrivalClock", "arrival_ns"]


class ArrivalClock:
    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()  # the HTTP and gRPC APIs may share it across threads

    def __call__(self) -> int:
        with self._lock:
            ns = max(self._clock(), self._last + 1)
            if ns % 1_000_000 == 0:
                ns += 1
            self._last = ns
            return ns


arrival_ns = ArrivalClock()  # one per process: every API of this sidecar stamps with it
