"""The workflow engine's shell: actors and the app-facing service around the pure core
in `sidecar.workflow`.

- `workflow_actor`: one actor per instance, in three layers: `workflow_saved` (its state,
  loaded, folded and checkpointed), `workflow_runner` (the orchestration runner) and
  `workflow_actor` (the mailbox); `workflow_requests` reads the methods' payloads.
- `activity_actor`: one actor per scheduled task: runs it on an app, reports back.
- `effects`: carries out a saved turn's effects (dispatches, timers, children, events).
- `apps`: GetWorkItems streams and completions (`AppConnections`).
- `taskhub`: the Durable Task service the Dapr SDK calls (`TaskHubService`).
- `naming`, `status`, `waits`: actor types and index keys, GetInstance answers, an
  instance's waiting callers (kept by its actor).
"""

from __future__ import annotations

from sidecar.engine.activity_actor import ActivityActor
from sidecar.engine.apps import AppConnections
from sidecar.engine.taskhub import TaskHubService
from sidecar.engine.workflow_actor import WorkflowActor

__all__ = ["ActivityActor", "AppConnections", "TaskHubService", "WorkflowActor"]
