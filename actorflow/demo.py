"""`actorflow demo`: the main job. A local multi-node cluster running example workflows.

Runs `actorflow up` (3 placement nodes, 3 reminders nodes, 2 sidecars, SQLite) in a
temporary directory, starts one replica of the example app (`examples/workflows.py`,
the unchanged Dapr workflow SDK) beside each sidecar, runs every example through the
SDK's client and prints what each did, then SIGKILLs a sidecar in the middle of a
1000-activity fan-out and shows the workflow finish with the right answer, and stops
everything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actorflow.testing import UpCluster, free_port_block, pid_alive

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def say(text: str) -> None:
    print(text, flush=True)


def start_apps(info: dict[str, object], root: Path) -> list[subprocess.Popen[bytes]]:
    apps = []
    sidecars = info["sidecars"]
    assert isinstance(sidecars, list)
    for i, s in enumerate(sidecars):
        env = {**os.environ, "DAPR_GRPC_ENDPOINT": s["grpc"],
               "EXAMPLES_DATA": str(root / "bank.db"), "PYTHONUNBUFFERED": "1"}  # fmt: skip
        log = (root / f"app-{i}.log").open("ab")
        apps.append(
            subprocess.Popen(
                [sys.executable, str(EXAMPLES / "workflows.py")], stdout=log, stderr=log, env=env
            )
        )
    return apps


def crash_story(info: dict[str, object]) -> bool:
    from dapr.ext.workflow import DaprWorkflowClient

    sidecars = info["sidecars"]
    assert isinstance(sidecars, list)
    host, port = sidecars[0]["grpc"].rsplit(":", 1)
    client = DaprWorkflowClient(host=host, port=port)
    try:
        started = time.monotonic()
        iid = client.schedule_new_workflow("fan_out_fan_in", input=1000,
                                           instance_id=f"crash-{time.time_ns()}")  # fmt: skip
        time.sleep(0.4)  # let the fan-out get going, so that the kill lands mid-run
        victim = sidecars[1]
        os.kill(victim["pid"], signal.SIGKILL)
        say(
            f"  SIGKILL {victim['name']} {time.monotonic() - started:.2f}s into a "
            "1000-activity fan-out ..."
        )
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=120)
        took = time.monotonic() - started
    finally:
        client.close()
    expected = {"items": 1000, "sum_of_squares": sum(i * i for i in range(1000))}
    output = json.loads(state.serialized_output) if state and state.serialized_output else None
    ok = state is not None and output == expected
    say(
        f"  ... {'completed' if ok else 'NOT completed'} in {took:.2f}s with "
        f"{json.dumps(output)} (placement moved the dead sidecar's actors; the survivor "
        "re-issued the pending activities from the stored state)"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="actorflow demo", description=__doc__).parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from examples.run import run_all

    with tempfile.TemporaryDirectory(prefix="actorflow-demo-") as tmp:
        root = Path(tmp)
        up = UpCluster(
            root / "cluster",
            ["--sidecars=2", f"--base-grpc-port={free_port_block(4)}",
             f"--base-http-port={free_port_block(4)}"],
        )  # fmt: skip
        say(
            "actorflow demo: `actorflow up` starts 3 placement nodes, 3 reminders nodes and "
            "2 sidecars (SQLite store) ..."
        )
        info = up.start()
        apps = start_apps(info, root)
        pids: list[int] = []
        ok = False
        try:
            for s in info["sidecars"]:
                say(
                    f"  {s['name']}: gRPC {s['grpc']}, HTTP {s['http']}; an example app "
                    "(Dapr SDK) beside it"
                )
            say("\nExamples (examples/workflows.py), started through the Dapr SDK client:")
            outcomes = run_all(info["sidecars"][0]["grpc"])
            for o in outcomes:
                mark = "ok " if o.ok else "BAD"
                say(f"  [{mark}] {o.name:<19} {o.seconds:5.2f}s  {o.story}")
            say("\nCrash recovery:")
            ok = crash_story(info) and all(o.ok for o in outcomes)
            pids = list(up.cluster()["pids"].values())
        finally:
            for p in apps:
                p.send_signal(signal.SIGTERM)
            for p in apps:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
            code = up.stop()
        left = [p for p in pids if pid_alive(p)]
        say(
            f"\nSIGTERM to `actorflow up`: exit code {code}; {len(pids)} processes, "
            f"{len(left)} left running."
        )
    return 0 if ok and not left else 1
