"""The Dapr SDK app the engine's end-to-end tests run (its own process, unchanged SDK):
`DAPR_GRPC_ENDPOINT=... python tests/engine_app.py`.

`ENGINE_APP_ROLE` picks what it registers: `all` (default: everything below but the
multi-app callee), `caller` (app `a` of the multi-app tests: its workflows call app `b`)
or `callee` (app `b`: activities and a child workflow only it has).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()
ROLE = os.environ.get("ENGINE_APP_ROLE", "all")


# ---- activities and workflows of the single-app cluster


def double(ctx: Any, x: int) -> int:
    return x * 2


def explode(ctx: Any, message: str) -> None:
    raise ValueError(message)


def slow_double(ctx: Any, x: int) -> int:
    time.sleep(0.5)
    return x * 2


def sleepy(ctx: Any, seconds: float) -> float:
    """An activity that takes `seconds` (longer than a sidecar's idle timeout, in tests)."""
    time.sleep(seconds)
    return seconds


def marked_double(ctx: Any, args: dict[str, Any]) -> int:
    """Records each start (a line in a file), then takes `sleep` seconds."""
    with Path(args["path"]).open("a") as f:
        f.write(f"{args['x']}\n")
    time.sleep(args["sleep"])
    return int(args["x"]) * 2


def flaky(ctx: Any, args: dict[str, Any]) -> int:
    """Fails until it has been called `fail_times` times (attempts counted in a file,
    since attempts may run in either app process)."""
    path = Path(args["path"])
    with path.open("a") as f:
        f.write("x\n")
    attempts = len(path.read_text().splitlines())
    if attempts <= args["fail_times"]:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


def echo(ctx: Any, value: Any) -> Any:
    return value


def blob(ctx: Any, size: int) -> str:
    return "x" * size


def sized(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    """Payloads of chosen sizes: an activity's `result`, a child's `child_input` (under
    `child_id` if given), the workflow's custom `status` and `output` (bytes each); a
    failed task is caught and reported as {"caught": error type, "message": ...}."""
    try:
        if "result" in args:
            got = yield ctx.call_activity(blob, input=args["result"])
            return {"result": len(got)}
        if "child_input" in args:
            got = yield ctx.call_child_workflow(
                "sized", input={"echo": "c" * args["child_input"]}, instance_id=args.get("child_id")
            )
            return {"child": got}
    except wf.TaskFailedError as exc:
        return {"caught": exc.details.error_type, "message": exc.details.message}
    if "status" in args:
        ctx.set_custom_status("s" * args["status"])
        yield ctx.create_timer(timedelta(milliseconds=10))
    if "output" in args:
        return "o" * args["output"]
    return {"echo": len(args.get("echo", ""))}


def long_step(ctx: wf.DaprWorkflowContext, seconds: float) -> Any:
    return (yield ctx.call_activity(sleepy, input=seconds))


def fan(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    results = yield wf.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


def looping(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    """Two activities per generation, then a timer of `pause` seconds, then continues as
    new until `left` is 0."""
    left = args["left"]
    a, b = yield wf.when_all([ctx.call_activity(double, input=left) for _ in range(2)])
    if left > 0:
        yield ctx.create_timer(timedelta(seconds=args["pause"]))
        ctx.continue_as_new({**args, "left": left - 1})
        return None
    return a + b


def echo_through(ctx: wf.DaprWorkflowContext, value: Any) -> Any:
    """Its input three times in its history: the start, the activity's input, its
    result; the turn after the activity carries them all (or the last two)."""
    got = yield ctx.call_activity(echo, input=value)
    return len(got)


def slow_fan(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    """`n` activities that record their starts in `path` and take `sleep` seconds each,
    in waves of `wave` (a durable timer of `pause` seconds between waves)."""
    total = 0
    for start in range(0, args["n"], args["wave"]):
        if start:
            yield ctx.create_timer(timedelta(seconds=args["pause"]))
        calls = [
            ctx.call_activity(marked_double, input={**args, "x": i})
            for i in range(start, min(start + args["wave"], args["n"]))
        ]
        total += sum((yield wf.when_all(calls)))
    return total


def timer_then_event(ctx: wf.DaprWorkflowContext, seconds: float) -> Any:
    yield ctx.create_timer(timedelta(seconds=seconds))
    ctx.set_custom_status("waiting for go")
    got = yield ctx.wait_for_external_event("go")
    return {"got": got}


def timed(ctx: wf.DaprWorkflowContext, seconds: float) -> Any:
    """How long a durable timer of `seconds` took, as the workflow's clock saw it."""
    before = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - before).total_seconds()


def fails(ctx: wf.DaprWorkflowContext, message: str) -> Any:
    yield ctx.call_activity(explode, input=message)
    return "unreachable"


def waits(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    got = yield ctx.wait_for_external_event("release")
    return got


def retries(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    policy = wf.RetryPolicy(
        first_retry_interval=timedelta(milliseconds=200),
        max_number_of_attempts=args["max_attempts"],
        backoff_coefficient=1.0,
    )
    return (yield ctx.call_activity(flaky, input=args, retry_policy=policy))


def race(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """when_any of an external event and a long timer; then when_any of a short timer
    and an event nobody raises."""
    event = ctx.wait_for_external_event("Approval")  # raised as "APPROVAL": no case
    timer = ctx.create_timer(timedelta(seconds=60))
    first = yield wf.when_any([event, timer])
    short = ctx.create_timer(timedelta(milliseconds=200))
    never = ctx.wait_for_external_event("never")
    second = yield wf.when_any([short, never])
    return {
        "first": "event" if first is event else "timer",
        "value": event.get_result() if first is event else None,
        "second": "timer" if second is short else "event",
    }


def early_event(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """Awaits an event only after an activity: the event, raised at once, must have
    been buffered."""
    yield ctx.call_activity(slow_double, input=1)
    got = yield ctx.wait_for_external_event("early")
    return got


def deterministic(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """Values made before an activity, recomputed on every replay, must equal what
    the first execution passed to the activity."""
    first = {"uuid": str(ctx.uuid4()), "now": ctx.current_utc_datetime.isoformat()}
    echoed = yield ctx.call_activity(echo, input=first)
    again = {"uuid": str(ctx.uuid4()), "now": ctx.current_utc_datetime.isoformat()}
    return {"first": first, "echoed": echoed, "after": again}


def child(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    if args.get("fail"):
        yield ctx.call_activity(explode, input=f"child {ctx.instance_id} failed")
    if args.get("wait"):
        yield ctx.wait_for_external_event("never")
    value = yield ctx.call_activity(double, input=args["x"])
    return {"id": ctx.instance_id, "value": value}


def parent(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    """Two children (one with an explicit id, one with the SDK's derived id) and one
    failing child whose failure is caught."""
    named = ctx.call_child_workflow("child", input={"x": 1}, instance_id=f"{ctx.instance_id}-c1")
    derived = ctx.call_child_workflow("child", input={"x": 2})
    results = yield wf.when_all([named, derived])
    try:
        yield ctx.call_child_workflow("child", input={"x": 0, "fail": True})
        caught = None
    except wf.TaskFailedError as exc:
        caught = str(exc)
    if args.get("wait"):
        yield ctx.call_child_workflow("child", input={"x": 0, "wait": True},
                                      instance_id=f"{ctx.instance_id}-waiting")  # fmt: skip
    return {"results": results, "caught": caught}


def tree(ctx: wf.DaprWorkflowContext, depth: int) -> Any:
    """A chain of children that all wait forever (recursive terminate and purge)."""
    if depth > 0:
        yield ctx.call_child_workflow("tree", input=depth - 1, instance_id=f"{ctx.instance_id}-c")
    else:
        yield ctx.wait_for_external_event("never")
    return depth


def counter(ctx: wf.DaprWorkflowContext, state: dict[str, Any]) -> Any:
    """Continues as new until it has seen `target` "add" events; every generation
    consumes one event and carries the others over."""
    value = yield ctx.wait_for_external_event("add")
    state = {**state, "total": state["total"] + value, "gens": state["gens"] + 1}
    if state["gens"] < state["target"]:
        ctx.continue_as_new(state, save_events=True)
        return None
    return state


# ---- multi-app: app `a` calls app `b`


def remote_triple(ctx: Any, x: int) -> int:
    return x * 3


def remote_explode(ctx: Any, message: str) -> None:
    raise ValueError(f"from b: {message}")


def remote_child(ctx: wf.DaprWorkflowContext, args: dict[str, Any]) -> Any:
    if args.get("fail"):
        yield ctx.call_activity(remote_explode, input="child")  # b's own activity
    value = yield ctx.call_activity(remote_triple, input=args["x"])
    return {"child": ctx.instance_id, "value": value}


def remote_waiter(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    return (yield ctx.wait_for_external_event("never"))


def cross_tree(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    """A child in app b that waits forever (recursive terminate and purge across apps)."""
    return (
        yield ctx.call_child_workflow(
            "remote_waiter", input=None, instance_id=f"{ctx.instance_id}-w", app_id="b"
        )
    )


def cross_app(ctx: wf.DaprWorkflowContext, x: int) -> Any:
    tripled = yield ctx.call_activity("remote_triple", input=x, app_id="b")
    child_out = yield ctx.call_child_workflow(
        "remote_child", input={"x": x}, instance_id=f"{ctx.instance_id}-b", app_id="b"
    )
    errors = []
    try:
        yield ctx.call_activity("remote_explode", input="activity", app_id="b")
    except wf.TaskFailedError as exc:
        errors.append(str(exc))
    try:
        yield ctx.call_child_workflow("remote_child", input={"x": x, "fail": True}, app_id="b")
    except wf.TaskFailedError as exc:
        errors.append(str(exc))
    return {"tripled": tripled, "child": child_out, "errors": errors}


def register() -> None:
    if ROLE == "all":
        for fn in (double, explode, slow_double, marked_double, flaky, echo, sleepy, blob):
            runtime.register_activity(fn, name=fn.__name__)
        for w in (fan, slow_fan, timer_then_event, timed, fails, waits, retries, race,
                  early_event, deterministic, child, parent, tree, counter,
                  long_step, sized, echo_through, looping):  # fmt: skip
            runtime.register_workflow(w, name=w.__name__)
    elif ROLE == "caller":
        runtime.register_workflow(cross_app, name="cross_app")
        runtime.register_workflow(cross_tree, name="cross_tree")
    elif ROLE == "callee":
        runtime.register_activity(remote_triple, name="remote_triple")
        runtime.register_activity(remote_explode, name="remote_explode")
        runtime.register_workflow(remote_child, name="remote_child")
        runtime.register_workflow(remote_waiter, name="remote_waiter")
    else:
        raise SystemExit(f"unknown ENGINE_APP_ROLE {ROLE!r}")


if __name__ == "__main__":
    register()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("APP READY", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()
