"""Shared pieces of the raftkit tests. The multi-process harness lives in
raftkit_harness.py (also used by bench_raft.py); this directory is put on sys.path so
that test modules can import it (pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
