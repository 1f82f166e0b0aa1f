"""`actorflow bench reminders`: a real 3-node reminders cluster on loopback.

Starts three `python -m reminders` processes (ephemeral ports, a temporary data
directory, fernet-encrypted Raft, journal synced before every acknowledgement) and drives
them from this process with asyncio clients. Phases:

1. register: `--register` CreateReminder calls from `--concurrency` concurrent callers
   sharing one `RemindersClient` (which folds concurrent calls into CreateReminders, as a
   sidecar would), after `--warmup` unmeasured ones. Rate, and per-call latency p50/p99
   (call to durable acknowledgement). This closed loop finds the highest rate; its
   latency includes the queue that 64 callers build on purpose.
1b. paced: registrations started on a fixed schedule at `--paced-rate` per second for
   `--paced-seconds` (open loop, latency from the scheduled start): the latency a
   caller sees at that offered rate.
2. burst: `--burst` reminders all due at the same instant T0, one subscriber connected.
   `triggers_per_s` = burst / (last arrival - T0); lateness of the burst is reported as
   `burst_lateness_*` (with N due at once, the last one waits N / throughput by design).
3. steady: `--burst` reminders due evenly over a window at `--steady-rate` per second:
   `lateness_p50_ms` / `lateness_p99_ms` (arrival time minus due time) under that load.
4. failover: `--failover` reminders due over a window at `--failover-rate`/s; the leader
   is SIGKILLed in the middle. `failover_resume_s` = first trigger from the new term
   minus the kill; `failover_lateness_*` and the duplicates are reported too.

Registration in phases 2-4 uses CreateReminders (1000 per call); all due times are
absolute (RFC 3339) so that registration time does not shift them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import add_common_args, emit, now_iso, percentile, result, status_printer
from reminders.api.v1 import reminders_pb2 as pb
from reminders.client import RemindersClient, TriggerSubscriber
from reminders.testing import LocalCluster

__all__ = ["main"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _rfc3339(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")


def _key(app: str, i: int) -> pb.ReminderKey:
    return pb.ReminderKey(namespace="bench", app_id=app, actor_type="T", actor_id=f"a{i}", name="r")


class Sink:
    """Records (due_ms, arrival_ms, term, actor id) of every trigger of one app."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.fires: list[tuple[int, int, int, str]] = []
        self.seen: set[str] = set()
        self.done = asyncio.Event()

    async def handler(self, term: int, triggers: list[pb.Trigger]) -> None:
        now = _now_ms()
        for t in triggers:
            self.fires.append((t.due_ms, now, term, t.key.actor_id))
            self.seen.add(t.key.actor_id)
        if len(self.seen) >= self.expected:
            self.done.set()


async def _register_phase(
    client: RemindersClient, n: int, concurrency: int, warmup: int = 0
) -> dict[str, float]:
    """`warmup` registrations first (channels, the leader's first compactions, caches),
    unmeasured; then `n` measured ones."""
    latencies: list[float] = []

    async def run(prefix: str, count: int, record: bool) -> None:
        counter = iter(range(count))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                await client.create(_key(prefix, i), due_time="24h")
                if record:
                    latencies.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run("warm", warmup, False)
    t0 = time.perf_counter()
    await run("reg", n, True)
    elapsed = time.perf_counter() - t0
    return {
        "register_per_s": n / elapsed,
        "register_p50_ms": percentile(latencies, 50),
        "register_p99_ms": percentile(latencies, 99),
    }


async def _paced_register_phase(
    client: RemindersClient, rate: int, seconds: float
) -> dict[str, float]:
    """Open-loop registrations: calls start on a fixed schedule of `rate` per second for
    `seconds`, whatever the answers do. A call's latency is counted from its scheduled
    start, so a stall also charges the calls it delayed (no coordinated omission)."""
    latencies: list[float] = []
    n = int(rate * seconds)
    loop = asyncio.get_running_loop()

    async def one(i: int, scheduled: float) -> None:
        await client.create(_key("paced", i), due_time="24h")
        latencies.append((loop.time() - scheduled) * 1000)

    tasks: list[asyncio.Task[None]] = []
    start = loop.time() + 0.01
    sent = 0
    while sent < n:
        now = loop.time()
        due = min(n, int((now - start) * rate) + 1) if now >= start else 0
        for i in range(sent, due):
            tasks.append(asyncio.create_task(one(i, start + i / rate)))
        sent = max(sent, due)
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    return {
        "paced_register_offered_per_s": float(rate),
        "paced_register_per_s": n / elapsed,
        "paced_register_p50_ms": percentile(latencies, 50),
        "paced_register_p99_ms": percentile(latencies, 99),
    }


async def _bulk_register(client: RemindersClient, app: str, due: list[int]) -> None:
    requests = [
        pb.CreateReminderRequest(key=_key(app, i), due_time=_rfc3339(d)) for i, d in enumerate(due)
    ]
    chunks = [requests[i : i + 1000] for i in range(0, len(requests), 1000)]
    gate = asyncio.Semaphore(4)

    async def send(chunk: list[pb.CreateReminderRequest]) -> None:
        async with gate:
            await client.create_many(chunk)

    await asyncio.gather(*(send(c) for c in chunks))


async def _fire_phase(
    cluster: LocalCluster,
    client: RemindersClient,
    app: str,
    due: list[int],
    *,
    timeout_s: float,
    kill_at_ms: int | None = None,
) -> tuple[Sink, TriggerSubscriber, float | None]:
    sink = Sink(len(due))
    sub = TriggerSubscriber(
        cluster.addresses, host=f"bench-{app}", namespace="bench", app_id=app, handler=sink.handler
    )
    task = asyncio.create_task(sub.run())
    killed_ms: float | None = None
    try:
        await _bulk_register(client, app, due)
        if kill_at_ms is not None:
            leader = await cluster.wait_leader()
            await asyncio.sleep(max(0.0, (kill_at_ms - _now_ms()) / 1000))  # the kill instant
            killed_ms = time.time_ns() / 1e6
            leader.kill()
        await asyncio.wait_for(sink.done.wait(), timeout_s)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return sink, sub, killed_ms


def _lateness(sink: Sink) -> list[float]:
    return [float(arrival - due) for due, arrival, _, _ in sink.fires]


async def _run(ns: argparse.Namespace, base: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    status = status_printer(ns.quiet, "reminders")
    cluster = LocalCluster(base, extra_args=["--log-level", "WARNING"])
    await cluster.start()
    try:
        await cluster.wait_leader()
        async with RemindersClient(cluster.addresses, timeout_s=30) as client:
            metrics.update(await _register_phase(client, ns.register, ns.concurrency, ns.warmup))
            status(
                f"register: {metrics['register_per_s']:.0f}/s, "
                f"p99 {metrics['register_p99_ms']:.1f} ms"
            )
            if ns.paced_rate > 0:
                metrics.update(await _paced_register_phase(client, ns.paced_rate, ns.paced_seconds))
                status(f"paced at {ns.paced_rate}/s: p99 {metrics['paced_register_p99_ms']:.1f} ms")
            reg_rate = max(1000.0, metrics["register_per_s"])

            # Burst: everything due at T0, after registration is surely over.
            t0 = _now_ms() + int(1000 * (ns.burst / reg_rate) * 1.5) + 2000
            sink, _, _ = await _fire_phase(cluster, client, "burst", [t0] * ns.burst, timeout_s=120)
            last = max(arrival for _, arrival, _, _ in sink.fires)
            metrics["triggers_per_s"] = ns.burst / max(0.001, (last - t0) / 1000)
            burst = _lateness(sink)
            metrics["burst_lateness_p50_ms"] = percentile(burst, 50)
            metrics["burst_lateness_p99_ms"] = percentile(burst, 99)
            status(f"burst of {ns.burst}: {metrics['triggers_per_s']:.0f} triggers/s")

            # Steady: due evenly at --steady-rate per second.
            start = _now_ms() + int(1000 * (ns.burst / reg_rate) * 1.5) + 2000
            due = [start + (i * 1000) // ns.steady_rate for i in range(ns.burst)]
            sink, _, _ = await _fire_phase(cluster, client, "steady", due, timeout_s=120)
            steady = _lateness(sink)
            metrics["lateness_p50_ms"] = percentile(steady, 50)
            metrics["lateness_p99_ms"] = percentile(steady, 99)
            status(
                f"steady at {ns.steady_rate}/s: lateness p99 {metrics['lateness_p99_ms']:.0f} ms"
            )

            # Failover: the leader is SIGKILLed in the middle of the window.
            start = _now_ms() + int(1000 * (ns.failover / reg_rate) * 1.5) + 2000
            window_ms = (ns.failover * 1000) // ns.failover_rate
            due = [start + (i * 1000) // ns.failover_rate for i in range(ns.failover)]
            sink, sub, killed_ms = await _fire_phase(
                cluster, client, "failover", due, timeout_s=120, kill_at_ms=start + window_ms // 2
            )
        first_term = min(term for _, _, term, _ in sink.fires)
        later = [arrival for _, arrival, term, _ in sink.fires if term > first_term]
        assert killed_ms is not None
        metrics["failover_resume_s"] = (min(later) - killed_ms) / 1000 if later else float("nan")
        lat = _lateness(sink)
        metrics["failover_lateness_p50_ms"] = percentile(lat, 50)
        metrics["failover_lateness_p99_ms"] = percentile(lat, 99)
        counts = collections.Counter(actor for _, _, _, actor in sink.fires)
        metrics["failover_duplicates"] = sum(c - 1 for c in counts.values())
        metrics["failover_refused_batches"] = sub.stats.refused_batches
        metrics["early_fires"] = 0 if all(a >= d for d, a, _, _ in sink.fires) else 1
    finally:
        await cluster.stop()
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actorflow bench reminders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--register", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5_000, help="unmeasured registrations")
    parser.add_argument(
        "--paced-rate",
        type=int,
        default=5_000,
        help="open-loop registration rate for the paced phase (0 skips it)",
    )
    parser.add_argument("--paced-seconds", type=float, default=6.0)
    parser.add_argument("--burst", type=int, default=100_000)
    parser.add_argument("--steady-rate", type=int, default=20_000)
    parser.add_argument("--failover", type=int, default=20_000)
    parser.add_argument("--failover-rate", type=int, default=4_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    add_common_args(parser)
    ns = parser.parse_args(argv)
    params = {k: v for k, v in vars(ns).items() if k not in ("json", "plot", "quiet", "data_dir")}
    started = now_iso()
    with contextlib.ExitStack() as stack:
        base = ns.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        metrics = asyncio.run(_run(ns, base))
    emit(result("reminders", params, metrics, started), ns.json, ns.quiet, ns.plot)
    return 0
