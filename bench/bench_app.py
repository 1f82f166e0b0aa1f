"""The Dapr SDK app the workflow benches run (its own process, unchanged SDK):
`DAPR_GRPC_ENDPOINT=... python bench/bench_app.py`. Activities are trivial (x*2), so the
benches measure the engine and the SDK, not the work."""

from __future__ import annotations

import signal
import threading
from typing import Any

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()


@runtime.activity(name="double")
def double(ctx: Any, x: int) -> int:
    return x * 2


@runtime.workflow(name="noop")
def noop(ctx: wf.DaprWorkflowContext, x: Any) -> Any:
    return x
    yield  # a generator: the SDK runs it as a workflow


@runtime.workflow(name="fanout")
def fanout(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    results = yield wf.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


@runtime.workflow(name="chain")
def chain(ctx: wf.DaprWorkflowContext, n: int) -> Any:
    x = 1
    for _ in range(n):
        x = yield ctx.call_activity(double, input=x)
    return x


@runtime.workflow(name="single")
def single(ctx: wf.DaprWorkflowContext, x: int) -> Any:
    y = yield ctx.call_activity(double, input=x)
    return y


if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("APP READY", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()
