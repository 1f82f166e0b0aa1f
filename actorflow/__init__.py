"""The `actorflow` command and project-wide tooling.

- `cli`: the `actorflow` console script and its subcommands.
- `protogen`: regenerates (or checks) the gRPC code generated from `proto/`.
- `smoke`: the wire smoke check of the real Dapr SDK against a no-engine TaskHub server.
- `up`: the `actorflow up` command (a whole cluster on loopback, in the foreground);
  `cluster` holds its `Cluster` of processes, `up_options` its options and fixed names,
  `scale` the `actorflow scale` client of its control socket; `procs` one child process
  of it (started, awaited until ready, stopped).
- `demo`: `actorflow demo`, the main job (a local cluster running the examples).
- `status`: `actorflow status`, what every node says about itself; `store_status` the
  state store's part of it.
- `certs`: `actorflow certs`, a CA and a certificate per node for mutual TLS.
- `testing`: `actorflow up` as a subprocess, for tests and benches.

The services live in their own top-level packages: `placement`, `reminders`, `sidecar`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
