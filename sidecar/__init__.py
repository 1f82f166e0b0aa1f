"""Sidecar: the app-facing Durable Task server, the actor runtime and the workflow engine.

- `api/taskhub/v1/`: generated messages of the app-facing Durable Task protocol (our own
  proto package, wire compatible with the Dapr Python SDK).
- `api/v1/`: generated sidecar-to-sidecar actor call protocol.
- `taskhub_wire`: serves and calls the Durable Task methods under the SDK's paths.
"""

from __future__ import annotations

from sidecar.taskhub_wire import (
    TASKHUB_SERVICE_NAME,
    TaskHubMethod,
    taskhub_generic_handler,
    taskhub_methods,
    taskhub_stub,
    unimplemented_message,
    unknown_method_handler,
)

__all__ = [
    "TASKHUB_SERVICE_NAME",
    "TaskHubMethod",
    "taskhub_generic_handler",
    "taskhub_methods",
    "taskhub_stub",
    "unimplemented_message",
    "unknown_method_handler",
]
