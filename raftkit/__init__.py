"""Raft plumbing shared by the placement and reminders services (pysyncobj underneath).

Kept separate so that `reminders` never imports `placement`.
"""

from __future__ import annotations

__all__: list[str] = []
