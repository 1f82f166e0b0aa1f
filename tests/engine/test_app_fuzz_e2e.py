"""DESIGN.md 4.5 for what an app sends back: a live sidecar whose app is replaced by this
test, which takes the work items of a few instances over GetWorkItems and answers every
one with seeded random content under the item's own token (workflow turns from
`actorflow.fuzzing.workflow_response`: the SDK's actions with edge values, or any
message; activity outcomes filled at random), some twice, some under a token that
names nothing. The instances start timers, children, events to others, continue as
new, finish or fail, as those answers say.

No call is answered INTERNAL or UNKNOWN, every instance still answers GetInstance and
GetInstanceHistory, the sidecar logs no unexpected exception, and once the SDK's app is
back a workflow runs to its result."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus

from actorflow.fuzzing import fill, workflow_response
from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.taskhub_wire import taskhub_stub

pytestmark = pytest.mark.slow

CLUSTER = {"sidecars": 1}
INSTANCES = 120
ITEMS = 2_000  # work items answered at most
STREAM_S = 20.0  # how long this test serves as the app
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def _turn_answer(rnd: random.Random, request: pb.WorkflowRequest) -> pb.WorkflowResponse:
    instance_id = request.instanceId if rnd.random() < 0.9 else "another"
    next_id = len(request.pastEvents) + len(request.newEvents)
    return workflow_response(rnd, instance_id, next_id, time.time_ns() // 1_000_000)


def _answer(calls: Any, item: pb.WorkItem, rnd: random.Random, codes: Counter[str]) -> None:
    """One answer to `item` under its token (or, now and then, a token of nothing),
    sometimes after an answer of the other kind under the same token."""
    token = item.completionToken if rnd.random() < 0.95 else f"nothing-{rnd.random()}"
    answer: Any
    other: Any = fill(pb.ActivityResponse(), rnd, share=0.6)
    if item.HasField("workflowRequest"):
        answer, name = _turn_answer(rnd, item.workflowRequest), "CompleteOrchestratorTask"
        wrong = "CompleteActivityTask"
    else:
        answer, name = other, "CompleteActivityTask"
        other, wrong = _turn_answer(rnd, pb.WorkflowRequest()), "CompleteOrchestratorTask"
    if rnd.random() < 0.05:
        other.completionToken = token
        _call(calls, wrong, other, codes)
    answer.completionToken = token
    for _ in range(2 if rnd.random() < 0.1 else 1):  # some answered twice
        _call(calls, name, answer, codes)


def _call(calls: Any, name: str, request: Any, codes: Counter[str]) -> Any:
    try:
        reply = calls[name](request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() not in BAD, (name, exc.code(), exc.details(), str(request)[:600])
        codes[f"{name} {exc.code().name}"] += 1
        return None
    codes[f"{name} OK"] += 1
    return reply


def _serve_as_the_app(calls: Any, rnd: random.Random) -> Counter[str]:
    codes: Counter[str] = Counter()
    stream = calls["GetWorkItems"](pb.GetWorkItemsRequest(), timeout=STREAM_S)
    answered = 0
    try:
        for item in stream:
            if item.HasField("healthPing"):
                continue
            _answer(calls, item, rnd, codes)
            answered += 1
            if answered == ITEMS:
                break
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    finally:
        stream.cancel()
    codes["items"] = answered
    return codes


def _unexpected_exceptions(root: Path) -> list[str]:
    """The tracebacks the sidecar logged."""
    lines: list[str] = []
    for log in sorted(root.glob("**/logs/sidecar-*.log")):
        text = log.read_text(errors="replace").splitlines()
        lines += [f"{log.name}: {text[i - 1][:300]}" for i, line in enumerate(text)
                  if line.startswith("Traceback")]  # fmt: skip
    return lines


def test_random_answers_from_the_app_are_applied_or_refused(cluster: Any) -> None:
    cluster.kill_app(0)  # this test is the app now
    rnd = random.Random(20261129)
    ids = [f"fz-{i}-{time.time_ns()}" for i in range(INSTANCES)]
    with grpc.insecure_channel(cluster.info["sidecars"][0]["grpc"]) as channel:
        calls = taskhub_stub(channel)
        for iid in ids:
            start = pb.CreateInstanceRequest(instanceId=iid, name="fuzzed")
            start.input.value = "1"
            calls["StartInstance"](start, timeout=10)
        codes = _serve_as_the_app(calls, rnd)
        assert codes["items"] >= INSTANCES, codes
        assert codes["CompleteOrchestratorTask OK"] > 0, codes
        for iid in ids:
            got = _call(calls, "GetInstance", pb.GetInstanceRequest(instanceId=iid), codes)
            assert got is not None and got.exists, (iid, codes)
            _call(calls, "GetInstanceHistory", pb.GetInstanceHistoryRequest(instanceId=iid), codes)
    assert _unexpected_exceptions(cluster.root) == []
    cluster.start_app(0)
    c = cluster.client(0)
    iid = c.schedule_new_workflow("fan", input=5, instance_id=f"after-fuzz-{time.time_ns()}")
    state = c.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED, state
    assert json.loads(state.serialized_output) == 20
