"""The engine core stays pure: no clock, randomness, I/O or event loop imports."""

from __future__ import annotations

import ast
from pathlib import Path

import sidecar.workflow

FORBIDDEN = {"asyncio", "grpc", "time", "os", "uuid", "random", "datetime", "socket"}


def test_no_impure_imports() -> None:
    package = Path(sidecar.workflow.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 10
    for module in modules:
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"


def test_public_names_are_exported() -> None:
    for name in sidecar.workflow.__all__:
        assert hasattr(sidecar.workflow, name), name
