"""Start each example workflow through a sidecar and report what it did.

`python examples/run.py 127.0.0.1:50001` (the sidecar's gRPC address; the app of
`examples/workflows.py` must be running beside a sidecar of the cluster). Each scenario
returns a `Outcome`; `main` prints them. The tests call `run_all` and check every one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dapr.ext.workflow import DaprWorkflowClient


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str
    output: Any
    seconds: float
    ok: bool
    story: str


PHONE_TRY_S = 3  # how long each try of the phone verification waits for an answer


def _finish(client: DaprWorkflowClient, iid: str, timeout: int = 60) -> tuple[str, Any]:
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=timeout)
    if state is None:
        return "MISSING", None
    output = json.loads(state.serialized_output) if state.serialized_output else None
    return state.runtime_status.name, output


def _uid(name: str) -> str:
    return f"{name}-{time.time_ns()}"


def bank(client: DaprWorkflowClient) -> Outcome:
    started = time.monotonic()
    for name, amount, is_open in (("alice", 100, True), ("bob", 0, True), ("carol", 0, False)):
        iid = client.schedule_new_workflow(
            "bank_open", input={"name": name, "balance": amount, "open": is_open},
            instance_id=_uid(f"open-{name}"),
        )  # fmt: skip
        _finish(client, iid)
    ok_id = client.schedule_new_workflow(
        "bank_transfer", input={"from": "alice", "to": "bob", "amount": 30},
        instance_id=_uid("transfer"),
    )  # fmt: skip
    status1, out1 = _finish(client, ok_id)
    bad_id = client.schedule_new_workflow(
        "bank_transfer", input={"from": "alice", "to": "carol", "amount": 50},
        instance_id=_uid("transfer"),
    )  # fmt: skip
    status2, out2 = _finish(client, bad_id)
    balances_id = client.schedule_new_workflow("bank_balances", input=["alice", "bob", "carol"],
                                               instance_id=_uid("balances"))  # fmt: skip
    _, balances = _finish(client, balances_id)
    ok = (
        status1 == status2 == "COMPLETED"
        and out1 == {"status": "transferred", "amount": 30}
        and out2["status"] == "compensated"
        and balances == {"alice": 70, "bob": 30, "carol": 0}
    )
    story = (
        f"alice->bob 30: {out1['status']}; alice->carol 50: {out2['status']} "
        f"(carol's account is closed, the debit was refunded); balances {balances}"
    )
    return Outcome("bank_transfer", status2, balances, time.monotonic() - started, ok, story)


def _await_status(client: DaprWorkflowClient, iid: str, text: str, timeout_s: float = 30) -> None:
    """Wait until the workflow's custom status mentions `text` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.get_workflow_state(iid)
        if state is not None and text in (state.serialized_custom_status or ""):
            return
        time.sleep(0.05)  # polling the workflow's custom status


def phone(client: DaprWorkflowClient) -> Outcome:
    started = time.monotonic()
    # Each try waits PHONE_TRY_S for an answer: the answers below are sent as soon as
    # the workflow shows it is ready for them, and must arrive within that time (a busy
    # machine, or a cluster healing from a partition, once took more than 1 s).
    iid = client.schedule_new_workflow(
        "phone_verification",
        input={"phone": "+1-555-0100", "code": "4711", "timeout_s": PHONE_TRY_S},
        instance_id=_uid("verify"),
    )  # fmt: skip
    client.wait_for_workflow_start(iid, timeout_in_seconds=30)
    _await_status(client, iid, "timed out")  # let the first try time out,
    client.raise_workflow_event(iid, "sms_answer", data="0000")  # answer wrong,
    _await_status(client, iid, "wrong code")
    client.raise_workflow_event(iid, "sms_answer", data="4711")  # then right
    status, out = _finish(client, iid)
    ok = status == "COMPLETED" and out == {"verified": True, "attempts": 3}
    story = "try 1 timed out, try 2 got a wrong code, try 3 the right one: " + json.dumps(out)
    return Outcome("phone_verification", status, out, time.monotonic() - started, ok, story)


def fan(client: DaprWorkflowClient) -> Outcome:
    started = time.monotonic()
    iid = client.schedule_new_workflow("fan_out_fan_in", input=500, instance_id=_uid("fan"))
    status, out = _finish(client, iid)
    expected = sum(i * i for i in range(500))
    ok = status == "COMPLETED" and out == {"items": 500, "sum_of_squares": expected}
    took = time.monotonic() - started
    story = f"500 activities in parallel, sum of squares {out and out['sum_of_squares']}"
    return Outcome("fan_out_fan_in", status, out, took, ok, story)


def tree(client: DaprWorkflowClient) -> Outcome:
    started = time.monotonic()
    iid = client.schedule_new_workflow("tree", input={"depth": 2, "width": 3},
                                       instance_id=_uid("tree"))  # fmt: skip
    status, out = _finish(client, iid)
    ok = status == "COMPLETED" and out == 1 + 3 + 9
    story = f"depth 2, width 3: {out} workflows in the tree (1 + 3 children + 9 grandchildren)"
    return Outcome("tree", status, out, time.monotonic() - started, ok, story)


def monitor(client: DaprWorkflowClient) -> Outcome:
    started = time.monotonic()
    iid = client.schedule_new_workflow("monitor", input={"check": 1, "interval_s": 0.2},
                                       instance_id=_uid("monitor"))  # fmt: skip
    status, out = _finish(client, iid)
    ok = status == "COMPLETED" and out == {"done_after_checks": 4}
    story = f"checked, slept on a durable timer and continued as new: {json.dumps(out)}"
    return Outcome("monitor", status, out, time.monotonic() - started, ok, story)


SCENARIOS: list[Callable[[DaprWorkflowClient], Outcome]] = [bank, phone, fan, tree, monitor]


def run_all(grpc_address: str) -> list[Outcome]:
    host, port = grpc_address.rsplit(":", 1)
    client = DaprWorkflowClient(host=host, port=port)
    try:
        return [scenario(client) for scenario in SCENARIOS]
    finally:
        client.close()


def main() -> int:
    outcomes = run_all(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50001")
    for o in outcomes:
        mark = "ok " if o.ok else "BAD"
        print(f"  [{mark}] {o.name:<20} {o.status:<10} {o.seconds:5.2f}s  {o.story}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
