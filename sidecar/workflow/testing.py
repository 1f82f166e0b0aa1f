"""Test support for the engine core: a synchronous dict store that enforces the store
contract's versions and limits, and builders of the SDK's actions and responses.

Pure and in-process, like etcd's `MemoryStorage`: engine tests and the shell's own
tests drive checkpoints through it without asyncio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import ConflictError, StoreLimits, Versioned, check_transaction
from sidecar.workflow.checkpoint import CheckpointPlan
from sidecar.workflow.events import to_timestamp

__all__ = [
    "DictStore",
    "complete_action",
    "create_timer_action",
    "response",
    "schedule_task_action",
]


@dataclass
class DictStore:
    """Keys to `Versioned`, one global revision counter (as in `MemoryStore`)."""

    limits: StoreLimits = field(default_factory=lambda: StoreLimits(1_000_000, 1 << 30))
    data: dict[str, Versioned] = field(default_factory=dict)
    revision: int = 0
    transactions: int = 0

    def version(self, key: str) -> int:
        found = self.data.get(key)
        return found.version if found is not None else 0

    def transact(self, writes: Mapping[str, bytes | None], *, expect: Mapping[str, int]) -> int:
        check_transaction(writes, expect, self.limits)
        for key, version in expect.items():
            if self.version(key) != version:
                raise ConflictError(key, version, self.version(key))
        self.transactions += 1
        if not writes:
            return 0
        self.revision += 1
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = Versioned(bytes(value), self.revision)
        return self.revision

    def run(self, plan: CheckpointPlan, version: int, *, stop_after: int | None = None) -> int:
        """Apply `plan` as the shell does; `stop_after` = crash after that many."""
        for index, txn in enumerate(plan.transactions):
            if stop_after is not None and index >= stop_after:
                break
            version = self.transact(txn.writes, expect=plan.expect(version))
        return version

    def rows(self, prefix: str) -> dict[str, bytes]:
        """The values under `prefix`, keyed by the rest of the key."""
        return {k[len(prefix) :]: v.value for k, v in self.data.items() if k.startswith(prefix)}


def schedule_task_action(
    action_id: int, name: str, input: str | None = None, target_app: str = ""
) -> pb.WorkflowAction:
    action = pb.WorkflowAction(id=action_id)
    action.scheduleTask.name = name
    if input is not None:
        action.scheduleTask.input.value = input
    if target_app:
        action.router.targetAppID = target_app
    return action


def create_timer_action(action_id: int, fire_at_ms: int) -> pb.WorkflowAction:
    action = pb.WorkflowAction(id=action_id)
    action.createTimer.fireAt.CopyFrom(to_timestamp(fire_at_ms))
    action.createTimer.createTimer.SetInParent()
    return action


def complete_action(
    action_id: int,
    status: int,
    result: str | None = None,
    failure: pb.TaskFailureDetails | None = None,
) -> pb.WorkflowAction:
    action = pb.WorkflowAction(id=action_id)
    action.completeWorkflow.workflowStatus = status  # type: ignore[assignment]
    if result is not None:
        action.completeWorkflow.result.value = result
    if failure is not None:
        action.completeWorkflow.failureDetails.CopyFrom(failure)
    return action


def response(
    instance_id: str, *actions: pb.WorkflowAction, custom_status: str | None = None
) -> pb.WorkflowResponse:
    res = pb.WorkflowResponse(instanceId=instance_id, actions=list(actions))
    if custom_status is not None:
        res.customStatus.value = custom_status
    return res
