"""Reminders service: durable timers replicated with Raft, fired at least once.

- `api/v1/`: generated protobuf/gRPC code for the reminders API (from `proto/reminders/`).
"""

from __future__ import annotations

__all__: list[str] = []
