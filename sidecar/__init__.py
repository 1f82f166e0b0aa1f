"""Sidecar: the app-facing Durable Task server, the actor runtime and the workflow engine.

- `api/taskhub/v1/`: generated messages of the app-facing Durable Task protocol (our own
  proto package, wire compatible with the Dapr Python SDK).
- `api/v1/`: generated sidecar-to-sidecar actor call protocol.
- `api/etcd/v3/`: the minimal etcd v3 KV stubs the etcd store uses.
- `taskhub_wire`: serves and calls the Durable Task methods under the SDK's paths.
- `actors/`: the virtual actor runtime (activations, routing, peer calls).
- `store/`: the state store contract and its memory, SQLite and etcd implementations.
- `app`: one sidecar process (`Sidecar`); `config`, `cli`, `http` around it.
- `counter`: the `counter` test actor type (`--test-actors`).
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
