"""Locust users that drive the sidecars' workflow HTTP API the way a client service would.

Run by `actorflow bench locust` (bench/locust_bench.py) as a subprocess: locust
monkey-patches the standard library for gevent on import, so nothing else imports this
module. Each user runs the example app's workflows (examples/workflows.py) with unique
instance ids, through the seed routes of DESIGN.md 3.2:

- fan_out_fan_in with a small N; the output must be the sum of squares;
- tree of depth 1 (a parent and `width` children); the output must count the nodes;
- phone_verification: the user answers with the right code via raiseEvent; the output
  must say verified;
- bank_transfer of 1 between two accounts the user opened in `on_start` (bank_open), so
  no two users ever touch the same account and a transfer cannot fail for lack of funds;
  in `on_stop` a bank_balances workflow checks that the balances add up exactly.

A workflow is started (`POST .../start`, 202 + `Location`), then its `Location` is polled
with a growing interval until the status is terminal or its deadline passes. Each
workflow is reported as a locust entry of its own (request type `WORKFLOW`, name = the
workflow type, response time = start to observed completion) beside the raw HTTP calls;
one that fails, times out or completes with the wrong output is a locust failure.

Environment:
    AF_LOCUST_HOSTS       comma-separated sidecar HTTP base URLs; users are spread over
                          them round robin (default: locust's --host)
    AF_LOCUST_DEADLINE_S  per-workflow deadline in seconds (default 60)
    AF_LOCUST_FAN_N       fan-out width (default 5)
    AF_LOCUST_REPORT      where to write, at exit, a JSON ledger of workflows started,
                          completed correctly and failed per type, with the latencies
    DAPR_API_TOKEN        sent as `dapr-api-token` when set
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING
from locust.stats import CSV_STATS_INTERVAL_SEC

DEADLINE_S = float(os.environ.get("AF_LOCUST_DEADLINE_S", "60"))
FAN_N = int(os.environ.get("AF_LOCUST_FAN_N", "5"))
HOSTS = [h.strip().rstrip("/") for h in os.environ.get("AF_LOCUST_HOSTS", "").split(",")]
HOSTS = [h for h in HOSTS if h]
TERMINAL = {"COMPLETED", "FAILED", "TERMINATED", "CANCELED"}
OPENING_BALANCE = 1_000_000
POLL_FIRST_S, POLL_MAX_S = 0.02, 0.25

_host_cycle = itertools.cycle(HOSTS) if HOSTS else None
_user_seq = itertools.count()
_run_tag = f"{os.getpid()}-{random.getrandbits(32):08x}"


class WorkflowFailedError(Exception):
    """A workflow that did not complete in time, or completed wrongly."""


class Ledger:
    """Workflows started, completed correctly and failed, per type (one locust process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_type: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.first_start: float | None = None
        self.last_end: float | None = None

    def _entry(self, kind: str) -> dict[str, Any]:
        return self.by_type.setdefault(
            kind, {"started": 0, "completed": 0, "failed": 0, "latencies_ms": []}
        )

    def started(self, kind: str) -> None:
        with self._lock:
            self._entry(kind)["started"] += 1
            if self.first_start is None:
                self.first_start = time.time()

    def ended(self, kind: str, ms: float, error: str | None) -> None:
        with self._lock:
            entry = self._entry(kind)
            if error is None:
                entry["completed"] += 1
                entry["latencies_ms"].append(round(ms, 2))
            else:
                entry["failed"] += 1
                if len(self.errors) < 50:
                    self.errors.append(f"{kind}: {error}")
            self.last_end = time.time()

    def interrupted(self, what: str) -> None:
        with self._lock:
            self.errors.append(f"interrupted: {what}")

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            total = {
                k: sum(e[k] for e in self.by_type.values())
                for k in ("started", "completed", "failed")
            }
            window = (self.last_end or 0.0) - (self.first_start or 0.0)
            return {
                **total,
                "window_s": round(max(window, 0.0), 3),
                "by_type": self.by_type,
                "errors": self.errors,
            }


LEDGER = Ledger()


def _write_ledger(environment: Environment, **_: Any) -> None:
    path = os.environ.get("AF_LOCUST_REPORT")
    if path:
        Path(path).write_text(json.dumps(LEDGER.to_json()) + "\n")
    if environment.parsed_options is not None and environment.parsed_options.csv_prefix:
        # locust rewrites its CSV files once a second and only closes them at exit, so
        # the workflows that ended while the users were stopping would be missing: give
        # the writer one more pass now that the figures are final.
        time.sleep(CSV_STATS_INTERVAL_SEC + 0.3)


# Fired after every user has stopped (with --stop-timeout, after its last workflow).
# locust's EventHook is untyped: call it through Any.
_add_listener: Any = events.quitting.add_listener
_add_listener(_write_ledger)


class WorkflowUser(HttpUser):
    """One client of the workflow API: runs one workflow at a time, end to end."""

    wait_time = between(0.0, 0.2)
    accounts: tuple[str, str] | None = None  # (source, target) once both are open
    transfers = 0  # transfers that completed correctly, so the balances to expect

    # ---- lifecycle: per-user bank accounts, checked at the end

    def on_start(self) -> None:
        if _host_cycle is not None:
            # Spread users over every sidecar (the session was built with locust's --host).
            self.host = self.client.base_url = next(_host_cycle)
        token = os.environ.get("DAPR_API_TOKEN")
        if token:
            self.client.headers["dapr-api-token"] = token
        self.uid = f"{_run_tag}-{next(_user_seq)}"
        self.seq = itertools.count()
        src, dst = f"acct-{self.uid}-src", f"acct-{self.uid}-dst"
        opened = True
        for name, balance in ((src, OPENING_BALANCE), (dst, 0)):
            request = {"name": name, "balance": balance, "open": True}
            opened &= self.run_workflow("bank_open", request, partial(operator.eq, name))
        if opened:
            self.accounts = (src, dst)

    def on_stop(self) -> None:
        if self.accounts is None:
            return
        src, dst = self.accounts
        expected = {src: OPENING_BALANCE - self.transfers, dst: self.transfers}
        self.run_workflow("bank_balances", [src, dst], lambda out: out == expected, final=True)

    # ---- the workload

    @task(3)
    def fan_out_fan_in(self) -> None:
        expected = {"items": FAN_N, "sum_of_squares": sum(i * i for i in range(FAN_N))}
        self.run_workflow("fan_out_fan_in", FAN_N, lambda out: out == expected)

    @task(2)
    def tree(self) -> None:
        width = 3
        self.run_workflow("tree", {"depth": 1, "width": width}, lambda out: out == 1 + width)

    @task(2)
    def phone_verification(self) -> None:
        code = f"{random.randrange(10_000):04d}"

        def answer(iid: str) -> None:
            with self.client.post(
                f"/v1.0/workflows/phone_verification/{iid}/raiseEvent",
                json={"name": "sms_answer", "data": code},
                name="/v1.0/workflows/phone_verification/[id]/raiseEvent",
                catch_response=True,
            ) as r:
                if r.status_code != 202:
                    r.failure(f"raiseEvent answered {r.status_code}: {r.text[:200]}")
                    raise WorkflowFailedError(f"raiseEvent answered {r.status_code}")

        # A timeout as long as the deadline: the answer, not the timer, decides.
        request = {"phone": f"+1-555-{self.uid}", "code": code, "timeout_s": DEADLINE_S}
        self.run_workflow(
            "phone_verification",
            request,
            lambda out: isinstance(out, dict) and out.get("verified") is True,
            after_start=answer,
        )

    @task(2)
    def bank_transfer(self) -> None:
        if self.accounts is None:
            return
        src, dst = self.accounts
        request = {"from": src, "to": dst, "amount": 1}
        expected = {"status": "transferred", "amount": 1}
        if self.run_workflow("bank_transfer", request, lambda out: out == expected):
            self.transfers += 1

    # ---- one workflow, end to end

    def run_workflow(
        self,
        kind: str,
        workflow_input: Any,
        check: Callable[[Any], bool],
        after_start: Callable[[str], None] | None = None,
        final: bool = False,
    ) -> bool:
        """Start, poll to a terminal state, check the output; report it as a WORKFLOW entry.

        `final` is for on_stop, which runs while the runner is stopping."""
        if not final:
            self._stop_if_stopping()
        iid = f"{kind}-{self.uid}-{next(self.seq)}"
        started = time.perf_counter()
        LEDGER.started(kind)
        error: Exception | None = None
        try:
            location = self._start(kind, iid, workflow_input)
            if after_start is not None:
                after_start(iid)
            state = self._poll(kind, location, started + DEADLINE_S)
            if state["runtimeStatus"] != "COMPLETED":
                raise WorkflowFailedError(
                    f"{iid} ended {state['runtimeStatus']}: {state.get('failure')}"
                )
            if not check(state.get("output")):
                raise WorkflowFailedError(
                    f"{iid} completed with a wrong output: {json.dumps(state.get('output'))[:200]}"
                )
        except Exception as exc:  # any error ends this workflow as failed, not the user
            error = exc
        except BaseException:  # GreenletExit: locust killed the user mid-workflow
            LEDGER.interrupted(f"{iid} ({self._state}, {time.time():.3f})")
            raise
        ms = (time.perf_counter() - started) * 1000
        LEDGER.ended(kind, ms, None if error is None else f"{type(error).__name__}: {error}")
        self.environment.events.request.fire(
            request_type="WORKFLOW",
            name=kind,
            response_time=ms,
            response_length=0,
            exception=error,
            context={},
            response=None,
            url=None,
        )
        return error is None

    def _stop_if_stopping(self) -> None:
        """Start no workflow once the runner is stopping.

        A user that sleeps between tasks is killed rather than asked to stop; when its
        sleep ends in the same loop turn as the stop decision, it may start a task before
        the GreenletExit arrives, which would cut a workflow in half. Yield here so that
        such a kill lands now, and stop the user otherwise."""
        runner = self.environment.runner
        if runner is not None and runner.state in (STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED):
            time.sleep(0.05)
            raise StopUser()

    def _start(self, kind: str, iid: str, workflow_input: Any) -> str:
        with self.client.post(
            f"/v1.0/workflows/{kind}/{iid}/start",
            json=workflow_input,
            name=f"/v1.0/workflows/{kind}/[id]/start",
            catch_response=True,
        ) as r:
            location = r.headers.get("Location") if r.status_code == 202 else None
            if location is None:
                r.failure(f"start answered {r.status_code} without Location: {r.text[:200]}")
                raise WorkflowFailedError(f"{iid}: start answered {r.status_code}")
            return str(location)

    def _poll(self, kind: str, location: str, deadline: float) -> dict[str, Any]:
        """GET the status URL until the state is terminal; 5xx and connection errors are
        retried (each is still a failed HTTP entry), 4xx ends the workflow as failed."""
        delay, last = POLL_FIRST_S, "no answer"
        while True:
            r = self.client.get(location, name=f"/v1.0/workflows/{kind}/[id]")
            if r.status_code == 200:
                state: dict[str, Any] = r.json()
                last = str(state.get("runtimeStatus"))
                if last in TERMINAL:
                    return state
            elif 400 <= r.status_code < 500:
                raise WorkflowFailedError(f"{location}: status answered {r.status_code}")
            else:
                last = f"HTTP {r.status_code}"
            if time.perf_counter() + delay > deadline:
                raise WorkflowFailedError(
                    f"{location} not terminal after {DEADLINE_S:g}s (last: {last})"
                )
            time.sleep(delay)  # gevent-patched: yields to the other users
            delay = min(delay * 1.5, POLL_MAX_S)
