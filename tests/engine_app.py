"""The Dapr SDK app the engine's end-to-end tests run (its own process, unchanged SDK):
`DAPR_GRPC_PORT=... python tests/engine_app.py`."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()


@runtime.activity(name="double")
def double(ctx: Any, x: int) -> int:
    return x * 2


@runtime.activity(name="explode")
def explode(ctx: Any, message: str) -> None:
    raise ValueError(message)


@runtime.workflow(name="fan")
def fan(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    results = yield wf.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


@runtime.workflow(name="timer_then_event")
def timer_then_event(ctx: wf.DaprWorkflowContext, seconds: float) -> Any:
    yield ctx.create_timer(timedelta(seconds=seconds))
    ctx.set_custom_status("waiting for go")
    got = yield ctx.wait_for_external_event("go")
    return {"got": got}


@runtime.workflow(name="fails")
def fails(ctx: wf.DaprWorkflowContext, message: str) -> Any:
    yield ctx.call_activity(explode, input=message)
    return "unreachable"


@runtime.workflow(name="waits")
def waits(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
    got = yield ctx.wait_for_external_event("release")
    return got


if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("APP READY", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()
