"""The proposal's scenarios as one Dapr workflow app (the published SDK, unchanged).

Run it beside a sidecar: `DAPR_GRPC_ENDPOINT=127.0.0.1:50001 python examples/workflows.py`
(or `DAPR_GRPC_PORT=50001`). `examples/run.py` starts each scenario and prints what it
did. Account balances live in a small SQLite file (`EXAMPLES_DATA`, default
`./.actorflow/examples.db`) so that every replica of the app sees the same bank.

- bank_transfer: debit, credit, and a refund to compensate when the credit fails.
- phone_verification: send a code, then a timer races the user's answer; three tries.
- fan_out_fan_in: one activity per item, all at once, then the sum.
- tree: a parent starts children that start grandchildren; results add up the tree.
- monitor: check a job, sleep on a durable timer, continue as new until it is done.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()


def _bank() -> sqlite3.Connection:
    path = Path(os.environ.get("EXAMPLES_DATA", ".actorflow/examples.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INT, open INT)")
    return db


# ---- bank transfer with compensation


@runtime.activity(name="open_account")
def open_account(ctx: Any, args: dict[str, Any]) -> None:
    with _bank() as db:
        db.execute(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
            (args["name"], args["balance"], int(args.get("open", True))),
        )


@runtime.activity(name="debit")
def debit(ctx: Any, args: dict[str, Any]) -> int:
    with _bank() as db:
        (balance,) = db.execute(
            "SELECT balance FROM accounts WHERE name = ?", (args["account"],)
        ).fetchone()
        if balance < args["amount"]:
            raise ValueError(f"insufficient funds in {args['account']}")
        db.execute(
            "UPDATE accounts SET balance = balance - ? WHERE name = ?",
            (args["amount"], args["account"]),
        )
        return int(balance - args["amount"])


@runtime.activity(name="credit")
def credit(ctx: Any, args: dict[str, Any]) -> int:
    with _bank() as db:
        row = db.execute(
            "SELECT balance, open FROM accounts WHERE name = ?", (args["account"],)
        ).fetchone()
        if row is None or not row[1]:
            raise ValueError(f"account {args['account']} is closed")
        db.execute(
            "UPDATE accounts SET balance = balance + ? WHERE name = ?",
            (args["amount"], args["account"]),
        )
        return int(row[0] + args["amount"])


@runtime.activity(name="balance")
def balance(ctx: Any, account: str) -> int:
    with _bank() as db:
        (value,) = db.execute("SELECT balance FROM accounts WHERE name = ?", (account,)).fetchone()
        return int(value)


@runtime.workflow(name="bank_transfer")
def bank_transfer(ctx: wf.DaprWorkflowContext, t: dict[str, Any]) -> Any:
    source, target, amount = t["from"], t["to"], t["amount"]
    yield ctx.call_activity(debit, input={"account": source, "amount": amount})
    try:
        yield ctx.call_activity(credit, input={"account": target, "amount": amount})
    except wf.TaskFailedError as failure:
        # Compensation: give the money back.
        yield ctx.call_activity(credit, input={"account": source, "amount": amount})
        return {"status": "compensated", "reason": str(failure)}
    return {"status": "transferred", "amount": amount}


@runtime.workflow(name="bank_open")
def bank_open(ctx: wf.DaprWorkflowContext, account: dict[str, Any]) -> Any:
    yield ctx.call_activity(open_account, input=account)
    return account["name"]


@runtime.workflow(name="bank_balances")
def bank_balances(ctx: wf.DaprWorkflowContext, accounts: list[str]) -> Any:
    values = yield wf.when_all([ctx.call_activity(balance, input=a) for a in accounts])
    return dict(zip(accounts, values, strict=True))


# ---- phone verification: a timer races an external event, three tries


@runtime.activity(name="send_code")
def send_code(ctx: Any, args: dict[str, Any]) -> None:
    print(f"[sms to {args['phone']}] your code is {args['code']}", flush=True)


@runtime.workflow(name="phone_verification")
def phone_verification(ctx: wf.DaprWorkflowContext, req: dict[str, Any]) -> Any:
    code = str(req["code"])  # the code to expect comes with the request (a demo)
    yield ctx.call_activity(send_code, input={"phone": req["phone"], "code": code})
    # One waiter until it is answered: a waiter left behind by a timed-out try would
    # otherwise take the next answer (events go to the oldest waiter of that name).
    answer = ctx.wait_for_external_event("sms_answer")
    for attempt in range(1, 4):
        timeout = ctx.create_timer(timedelta(seconds=req.get("timeout_s", 2)))
        winner = yield wf.when_any([answer, timeout])
        if winner == timeout:
            ctx.set_custom_status(f"attempt {attempt}: timed out")
            continue
        if str(answer.get_result()) == code:
            return {"verified": True, "attempts": attempt}
        ctx.set_custom_status(f"attempt {attempt}: wrong code")
        answer = ctx.wait_for_external_event("sms_answer")
    return {"verified": False, "attempts": 3}


# ---- fan-out / fan-in


@runtime.activity(name="square")
def square(ctx: Any, x: int) -> int:
    return x * x


@runtime.workflow(name="fan_out_fan_in")
def fan_out_fan_in(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    results = yield wf.when_all([ctx.call_activity(square, input=i) for i in range(n)])
    return {"items": n, "sum_of_squares": sum(results)}


# ---- a tree of child workflows


@runtime.workflow(name="tree")
def tree(ctx: wf.DaprWorkflowContext, node: dict[str, int]) -> Any:
    depth, width = node["depth"], node["width"]
    if depth == 0:
        return 1
    children = [
        ctx.call_child_workflow(
            tree, input={"depth": depth - 1, "width": width}, instance_id=f"{ctx.instance_id}.{i}"
        )
        for i in range(width)
    ]
    counts = yield wf.when_all(children)
    return 1 + sum(counts)


# ---- a monitor that continues as new


@runtime.activity(name="job_progress")
def job_progress(ctx: Any, check: int) -> int:
    return min(100, check * 25)


@runtime.workflow(name="monitor")
def monitor(ctx: wf.DaprWorkflowContext, state: dict[str, int]) -> Any:
    progress = yield ctx.call_activity(job_progress, input=state["check"])
    if progress >= 100:
        return {"done_after_checks": state["check"]}
    yield ctx.create_timer(timedelta(seconds=state.get("interval_s", 0.2)))
    ctx.continue_as_new({**state, "check": state["check"] + 1})
    return None


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("APP READY", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
