"""State store tests (a package so that mypy tells its conftest from the others)."""
