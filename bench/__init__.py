"""Benchmark scenarios behind `actorflow bench` (DESIGN.md section 7)."""

from __future__ import annotations

__all__: list[str] = []
