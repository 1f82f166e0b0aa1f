"""`freeze_startup_objects`: what is alive when a node is up leaves the collector's
generations (a full collection no longer walks it); what comes later is collected as
usual."""

from __future__ import annotations

import gc

from raftkit.service import freeze_startup_objects


def test_start_up_objects_leave_the_collectors_generations() -> None:
    kept = [[i] for i in range(100)]
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() >= len(kept)
        walked = {id(o) for o in gc.get_objects()}
        assert id(kept) not in walked
        assert not any(id(item) in walked for item in kept)
        later = [[1], [2]]
        assert id(later) in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
