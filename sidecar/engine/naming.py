"""Actor types and store keys of the workflow engine.

Actor types follow Dapr: `dapr.internal.{namespace}.{appID}.workflow` and `.activity`.
Besides the actors' own keys (`{appID}||{actorType}||{actorID}||{key}`, DESIGN.md 3.4)
the engine keeps one index row per instance, `{appID}||workflow-index||{instanceID}`,
written in the same transaction as the instance's metadata: `1` while it runs, `0` once
it finished. ListInstanceIDs reads it, and a sidecar that takes over actors scans it for
running instances to resume (DESIGN.md 5: recovery from the store, no reminder per step).
"""

from __future__ import annotations


def workflow_type(namespace: str, app_id: str) -> str:
    return f"dapr.internal.{namespace}.{app_id}.workflow"


def activity_type(namespace: str, app_id: str) -> str:
    return f"dapr.internal.{namespace}.{app_id}.activity"


def index_prefix(app_id: str) -> str:
    return f"{app_id}||workflow-index||"


def index_key(app_id: str, instance_id: str) -> str:
    return index_prefix(app_id) + instance_id


def instance_prefix(app_id: str, actor_type: str, actor_id: str) -> str:
    return f"{app_id}||{actor_type}||{actor_id}||"


def activity_prefix(app_id: str, namespace: str, instance_id: str) -> str:
    """Keys of every activity actor of one instance (ids `{instance}::{task}::{gen}`)."""
    return f"{app_id}||{activity_type(namespace, app_id)}||{instance_id}::"
