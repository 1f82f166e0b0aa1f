"""Actor types and store keys of the workflow engine.

Actor types follow Dapr: `dapr.internal.{namespace}.{appID}.workflow` and `.activity`.
Besides the actors' own keys (`{appID}||{actorType}||{actorID}||{key}`, DESIGN.md 3.4)
the engine keeps one index row per instance, `{appID}||workflow-index||{instanceID}`,
written in the same transaction as the instance's metadata: `1` while it runs, `0` once
it finished. ListInstanceIDs reads it, and a sidecar that takes over actors scans it for
running instances to resume (DESIGN.md 5: recovery from the store, no reminder per step).
"""

from __future__ import annotations

import re
from collections.abc import Collection

INTERNAL_ACTOR_PREFIX = "dapr.internal."  # the engine's actor types; not for the actor API
MAX_INSTANCE_ID = 256
MAX_NAME = 256  # a workflow's or an event's name, from a client
# What follows an instance's activity prefix in the keys of its own activity actors:
# `{task}::{generation}||{key}`. An instance whose id extends another's with `::` ("a"
# and "a::x") shares the prefix, and its rows must not be taken for the other's.
_OWN_ACTIVITY_REST = re.compile(r"\d+::(\d+)\|\|")


def workflow_type(namespace: str, app_id: str) -> str:
    return f"{INTERNAL_ACTOR_PREFIX}{namespace}.{app_id}.workflow"


def activity_type(namespace: str, app_id: str) -> str:
    return f"{INTERNAL_ACTOR_PREFIX}{namespace}.{app_id}.activity"


def index_prefix(app_id: str) -> str:
    return f"{app_id}||workflow-index||"


def index_key(app_id: str, instance_id: str) -> str:
    return index_prefix(app_id) + instance_id


def instance_prefix(app_id: str, actor_type: str, actor_id: str) -> str:
    return f"{app_id}||{actor_type}||{actor_id}||"


def activity_prefix(app_id: str, namespace: str, instance_id: str) -> str:
    """Keys of every activity actor of one instance (ids `{instance}::{task}::{gen}`),
    and of instances whose ids start with `{instance}::`: see `is_own_activity_key`."""
    return f"{app_id}||{activity_type(namespace, app_id)}||{instance_id}::"


def activity_prefixes(
    app_id: str, namespace: str, instance_id: str, other_apps: Collection[str] = ()
) -> list[str]:
    """The `activity_prefix` of an instance of `app_id` in its own app, then in each app
    of `other_apps` (where the activities it ran in another app keep their rows)."""
    apps = (app_id, *sorted(set(other_apps) - {app_id}))
    return [activity_prefix(app, namespace, instance_id) for app in apps]


def is_own_activity_key(prefix: str, key: str) -> bool:
    """Whether `key`, found under the `activity_prefix` of an instance, is a row of one
    of that instance's activity actors (not of an instance named `{instance}::...`)."""
    return activity_generation(prefix, key) is not None


def activity_generation(prefix: str, key: str) -> int | None:
    """The generation of the activity whose row is `key`, found under the
    `activity_prefix` of an instance; None when `key` is not one of its activities' rows."""
    if not key.startswith(prefix):
        return None
    match = _OWN_ACTIVITY_REST.match(key, len(prefix))
    return int(match.group(1)) if match else None


def instance_id_problem(instance_id: str) -> str | None:
    """Why `instance_id` cannot name a workflow instance, or None when it can: the one
    rule of every API (gRPC, HTTP, a child's id in a workflow's answer). At most
    MAX_INSTANCE_ID printable characters, and no `||`, the separator of store keys
    (DESIGN.md 3.4: `a||b` would share the rows of instance `a`)."""
    if not instance_id:
        return "instanceId is required"
    if len(instance_id) > MAX_INSTANCE_ID:
        return f"instanceId is invalid: over {MAX_INSTANCE_ID} characters"
    if "||" in instance_id:
        return "instanceId is invalid: it contains '||', the separator of store keys"
    if not instance_id.isprintable():
        return f"instanceId has a control or unprintable character: {instance_id[:80]!r}"
    return None


def name_problem(what: str, name: str) -> str | None:
    """Why `name` cannot be the `what` (a workflow's name, an event's name) a client
    gives, or None when it can: 1 to MAX_NAME printable characters, on every API."""
    if not name:
        return f"{what} is required"
    if len(name) > MAX_NAME or not name.isprintable():
        return f"invalid {what} {name[:80]!r}: 1 to {MAX_NAME} printable characters"
    return None
