"""Workflow engine core tests (a package so that mypy tells its modules apart)."""
