"""Placement service: which sidecars host which actor types.

- `api/v1/`: generated protobuf/gRPC code for the host stream (from `proto/placement/`).
"""

from __future__ import annotations

__all__: list[str] = []
