"""`injected_journal`: how a pysyncobj `SyncObj` is made to use a `DurableJournal`.

pysyncobj 0.3.17 takes no journal object: `SyncObj.__init__` calls
`createJournal(conf.journalFile)`, a name looked up in `pysyncobj.syncobj`. That name is
replaced (once, idempotently) with a wrapper that returns the journal staged by the
current thread and otherwise defers to pysyncobj's own factory, so other SyncObjs in the
process are unaffected.

Kept apart from `raftkit.journal` because it patches pysyncobj rather than storing
anything; `raftkit.journal` re-exports `injected_journal`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from raftkit.errors import JournalError

if TYPE_CHECKING:
    from raftkit.journal import DurableJournal

__all__ = ["injected_journal"]

_staged = threading.local()
_hook_lock = threading.Lock()


def _install_hook() -> None:
    import pysyncobj.syncobj as syncobj_module

    with _hook_lock:
        current = syncobj_module.createJournal
        if getattr(current, "_raftkit_hook", False):
            return
        original = current

        def create_journal(journal_file: Any = None) -> Any:
            journal = getattr(_staged, "journal", None)
            if journal is not None:
                _staged.journal = None
                return journal
            return original(journal_file)

        create_journal._raftkit_hook = True  # type: ignore[attr-defined]
        syncobj_module.createJournal = create_journal


@contextlib.contextmanager
def injected_journal(journal: DurableJournal) -> Iterator[None]:
    """Make the next SyncObj built by this thread use `journal`."""
    _install_hook()
    _staged.journal = journal
    try:
        yield
    except BaseException:
        _staged.journal = None
        raise
    leftover = getattr(_staged, "journal", None)
    _staged.journal = None
    if leftover is not None:
        raise JournalError("pysyncobj did not pick up the staged journal")
