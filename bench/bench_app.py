"""The Dapr SDK app the workflow benches run (its own process, unchanged SDK):
`DAPR_GRPC_ENDPOINT=... python bench/bench_app.py`. Activities are trivial (x*2), so the
benches measure the engine and the SDK, not the work; except `nap` (the scale bench),
which sleeps 200 ms so that the SDK's small thread pool, not the CPU, bounds each app.

With `BENCH_NAP_LOG=PATH` every `nap` execution appends `instance<TAB>input<TAB>pid` to
PATH (the input as JSON; one `write` on an O_APPEND file, so the apps beside several
sidecars can share it): the scale bench counts activity executions from it (activities
run at least once, so duplicates show there)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import dapr.ext.workflow as wf

runtime = wf.WorkflowRuntime()

NAP_S = 0.2
NAP_LOG = os.environ.get("BENCH_NAP_LOG", "")


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


@runtime.activity(name="nap")
def nap(ctx: Any, x: Any) -> Any:
    """I/O-bound: sleeps 200 ms (a thread of the SDK's pool) and returns its input."""
    time.sleep(NAP_S)
    if NAP_LOG:
        line = f"{ctx.workflow_id}\t{json.dumps(x)}\t{os.getpid()}\n".encode()
        fd = os.open(NAP_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return x


@runtime.workflow(name="naps")
def naps(ctx: wf.DaprWorkflowContext, k: int) -> Any:
    """k sequential naps; returns their outputs, `[[instance id, step], ...]`."""
    out = []
    for step in range(k):
        out.append((yield ctx.call_activity(nap, input=[ctx.instance_id, step])))
    return out


if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("APP READY", flush=True)
    try:
        stop.wait()
    finally:
        runtime.shutdown()
