"""Runnable example apps on the Dapr workflow SDK (see workflows.py and run.py)."""
