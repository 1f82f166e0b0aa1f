"""ActorHost in one event loop: turns, activation, deactivation, ownership."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import ClassVar

import pytest

from sidecar.actors.base import (
    ActorCallError,
    ActorContext,
    Answer,
    NotOwnerError,
    UnknownActorTypeError,
)
from sidecar.actors.host import ActorHost


class Probe:
    """Records overlapping turns and lifecycle calls; `block` holds a turn open."""

    running = 0
    overlaps = 0
    log: ClassVar[list[str]] = []
    later: ClassVar[list[asyncio.Future[bytes]]] = []  # answers of "later", settled by tests

    def __init__(self, ctx: ActorContext) -> None:
        self.id = ctx.actor_id
        self.release = ctx.services.get(ctx.actor_id) if ctx.services else None

    async def on_activate(self) -> None:
        Probe.log.append(f"activate {self.id}")

    async def invoke(self, method: str, payload: bytes) -> Answer:
        if method == "later":  # the answer comes after the turn
            Probe.later.append(asyncio.get_running_loop().create_future())
            return Probe.later[-1]
        Probe.running += 1
        if Probe.running > 1:
            Probe.overlaps += 1
        try:
            if method == "block" and self.release is not None:
                await self.release.wait()
            if method == "boom":
                raise RuntimeError("boom")
            await asyncio.sleep(0)
            return payload
        finally:
            Probe.running -= 1

    async def on_deactivate(self) -> None:
        Probe.log.append(f"deactivate {self.id}")


@pytest.fixture(autouse=True)
def reset() -> None:
    Probe.running = Probe.overlaps = 0
    Probe.log = []
    Probe.later = []


def make_host(
    owned: set[str] | None = None, services: object = None, idle: float = 60
) -> ActorHost:
    def owns(actor_type: str, actor_id: str) -> int | None:
        return 7 if owned is None or actor_id in owned else None

    return ActorHost({"probe": Probe}, sidecar="s1", services=services, owns=owns,
                     idle_timeout_s=idle, drain_timeout_s=2)  # fmt: skip


async def test_one_turn_at_a_time_per_actor() -> None:
    host = make_host()
    results = await asyncio.gather(
        *(host.invoke("probe", "a", "echo", bytes([i])) for i in range(50))
    )
    assert results == [bytes([i]) for i in range(50)]
    assert Probe.overlaps == 0
    assert Probe.log == ["activate a"] and host.activations == 1


async def test_unknown_type_and_not_owner_are_refused() -> None:
    host = make_host(owned={"mine"})
    with pytest.raises(UnknownActorTypeError):
        await host.invoke("nope", "x", "echo", b"")
    with pytest.raises(NotOwnerError):
        await host.invoke("probe", "theirs", "echo", b"")
    assert await host.invoke("probe", "mine", "echo", b"ok") == b"ok"


async def test_a_leaving_host_serves_its_active_actors_and_activates_no_more() -> None:
    """A sidecar that announced its leave still holds a table that gives it actors;
    activating one then would make a second activation beside the new owner's."""
    host = make_host()
    assert await host.invoke("probe", "active", "echo", b"a") == b"a"
    host.refuse_new()
    assert await host.invoke("probe", "active", "echo", b"b") == b"b"
    with pytest.raises(NotOwnerError):
        await host.invoke("probe", "new", "echo", b"c")
    assert host.active == frozenset({("probe", "active")})
    await host.deactivate_all()


async def test_actor_errors_reach_the_caller_and_the_actor_keeps_serving() -> None:
    host = make_host()
    with pytest.raises(ActorCallError, match="boom"):
        await host.invoke("probe", "a", "boom", b"")
    assert await host.invoke("probe", "a", "echo", b"still") == b"still"
    assert host.activations == 1


async def test_an_answer_that_comes_after_its_turn_does_not_hold_the_mailbox() -> None:
    host = make_host()
    first = asyncio.ensure_future(host.invoke("probe", "a", "later", b""))
    # The turn that returned a future has ended: the next calls are served meanwhile.
    assert await asyncio.wait_for(host.invoke("probe", "a", "echo", b"next"), 5) == b"next"
    assert not first.done() and len(Probe.later) == 1
    Probe.later[0].set_result(b"late")
    assert await asyncio.wait_for(first, 5) == b"late"
    failing = asyncio.ensure_future(host.invoke("probe", "a", "later", b""))
    await asyncio.wait_for(host.invoke("probe", "a", "echo", b""), 5)
    Probe.later[1].set_exception(RuntimeError("gone wrong"))
    with pytest.raises(ActorCallError, match="RuntimeError: gone wrong"):
        await asyncio.wait_for(failing, 5)
    withdrawn = asyncio.ensure_future(host.invoke("probe", "a", "later", b""))
    await asyncio.wait_for(host.invoke("probe", "a", "echo", b""), 5)
    Probe.later[2].cancel()  # the actor takes its answer back
    with pytest.raises(ActorCallError, match="withdrew"):
        await asyncio.wait_for(withdrawn, 5)


async def test_a_caller_that_goes_away_withdraws_a_later_answer() -> None:
    host = make_host()
    caller = asyncio.ensure_future(host.invoke("probe", "a", "later", b""))
    await asyncio.wait_for(host.invoke("probe", "a", "echo", b""), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)  # done callbacks run on the next pass of the loop
    assert Probe.later[0].cancelled()  # the actor can forget that caller


async def test_idle_actor_is_deactivated() -> None:
    host = make_host(idle=0.05)
    await host.invoke("probe", "a", "echo", b"")
    async with asyncio.timeout(5):
        while host.active:
            await asyncio.sleep(0.01)
    assert Probe.log == ["activate a", "deactivate a"]


async def test_an_actor_called_more_often_than_its_idle_timeout_stays() -> None:
    host = make_host(idle=0.05)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.4  # eight idle timeouts, several sweeps
    while loop.time() < end:
        assert await host.invoke("probe", "a", "echo", b"x") == b"x"
        await asyncio.sleep(0.005)  # the caller's pace: well inside the idle timeout
    assert host.activations == 1 and Probe.log == ["activate a"]


class Worker(Probe):
    """Busy (work of its own between turns) until the test says it is done."""

    done = asyncio.Event()

    def busy(self) -> bool:
        return not Worker.done.is_set()


async def test_a_busy_actor_is_not_swept_as_idle_and_is_once_its_work_ends() -> None:
    Worker.done = asyncio.Event()
    host = ActorHost({"worker": Worker}, sidecar="s1", services=None, owns=lambda t, i: 7,
                     idle_timeout_s=0.05, drain_timeout_s=2)  # fmt: skip
    await host.invoke("worker", "w", "echo", b"")
    await asyncio.sleep(0.5)  # ten idle timeouts, several sweeps: it must still be there
    assert host.active and Probe.log == ["activate w"]
    Worker.done.set()
    async with asyncio.timeout(5):
        while host.active:
            await asyncio.sleep(0.01)
    assert Probe.log == ["activate w", "deactivate w"]


async def test_deactivate_drains_the_turn_and_sends_queued_calls_back() -> None:
    release = asyncio.Event()
    host = make_host(services={"a": release})
    in_turn = asyncio.create_task(host.invoke("probe", "a", "block", b"first"))
    await asyncio.sleep(0)
    queued = asyncio.create_task(host.invoke("probe", "a", "echo", b"second"))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(host.deactivate([("probe", "a")]))
    await asyncio.sleep(0)
    assert not leaving.done(), "must wait for the turn in progress"
    with pytest.raises(NotOwnerError):
        await queued
    release.set()
    assert await in_turn == b"first"
    await leaving
    assert Probe.log == ["activate a", "deactivate a"]
    assert not host.active


class Leaver:
    """Leaves (`ctx.leave`) on "done"; "hold" leaves first, then waits on the gate."""

    seen: ClassVar[list[tuple[int, str]]] = []
    made = 0

    def __init__(self, ctx: ActorContext) -> None:
        Leaver.made += 1
        self.generation = Leaver.made
        self.ctx = ctx

    async def on_activate(self) -> None:
        return None

    async def invoke(self, method: str, payload: bytes) -> bytes:
        if method == "hold":
            self.ctx.leave()
            await self.ctx.services.wait()
        Leaver.seen.append((self.generation, payload.decode()))
        if method == "done":
            self.ctx.leave()
            self.ctx.leave()  # twice is once
        return payload

    async def on_deactivate(self) -> None:
        return None


def leaver_host(gate: asyncio.Event) -> ActorHost:
    Leaver.seen, Leaver.made = [], 0
    return ActorHost({"leaver": Leaver}, sidecar="s1", services=gate,
                     owns=lambda t, i: 7, idle_timeout_s=60, drain_timeout_s=2)  # fmt: skip


async def test_an_actor_that_leaves_is_deactivated_without_waiting_for_idle() -> None:
    gate = asyncio.Event()
    host = leaver_host(gate)
    assert await host.invoke("leaver", "a", "done", b"1") == b"1"
    async with asyncio.timeout(5):
        while host.active:
            await asyncio.sleep(0)  # the activation's task finishing
    assert host.deactivations == 1
    # A later call activates it again.
    assert await host.invoke("leaver", "a", "echo", b"2") == b"2"
    assert Leaver.seen == [(1, "1"), (2, "2")]


async def test_calls_queued_behind_a_leave_go_to_the_next_activation_in_order() -> None:
    gate = asyncio.Event()
    host = leaver_host(gate)
    first = asyncio.create_task(host.invoke("leaver", "a", "hold", b"0"))
    await asyncio.sleep(0)
    # Queued after the first turn asked to leave: they land in its mailbox behind the
    # marker and must be answered, in order, by the next activation, not refused.
    rest = [
        asyncio.create_task(host.invoke("leaver", "a", "echo", str(i).encode())) for i in (1, 2, 3)
    ]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, *rest) == [b"0", b"1", b"2", b"3"]
    assert Leaver.seen == [(1, "0"), (2, "1"), (2, "2"), (2, "3")]
    assert host.activations == 2


async def test_a_routed_call_and_a_leave_with_nothing_queued_ask_the_ring_nothing() -> None:
    """The router found this sidecar to be the owner in the same step: the activation
    trusts its table version instead of asking the ring again; an actor that leaves with
    an empty mailbox asks no one either (two ring lookups per activity of a fan-out)."""
    asked: list[str] = []

    def owns(actor_type: str, actor_id: str) -> int | None:
        asked.append(actor_id)
        return None  # would refuse: only a routed call can activate here

    gate = asyncio.Event()
    gate.set()
    Leaver.seen, Leaver.made = [], 0
    host = ActorHost({"leaver": Leaver}, sidecar="s1", services=gate, owns=owns)
    with pytest.raises(NotOwnerError):
        await host.invoke("leaver", "a", "done", b"0")
    assert asked == ["a"]
    assert await host.submit("leaver", "a", "done", b"1", routed_version=3) == b"1"
    async with asyncio.timeout(5):
        while host.active:
            await asyncio.sleep(0)  # the activation's task finishing
    assert asked == ["a"] and host.deactivations == 1


class BusyLeaver(Leaver):
    """A Leaver with a `busy()` hook: the host keeps that bound method on the activation."""

    made_refs: ClassVar[list[weakref.ref[BusyLeaver]]] = []

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        BusyLeaver.made_refs.append(weakref.ref(self))

    def busy(self) -> bool:
        return False


async def test_an_actor_that_left_goes_by_reference_counting() -> None:
    """The actor's `leave` holds its activation and the activation its `busy`: the
    host cuts that link when the activation ends, so neither waits for the collector."""
    Leaver.seen, Leaver.made, BusyLeaver.made_refs = [], 0, []
    host = ActorHost({"busy": BusyLeaver}, sidecar="s1", services=asyncio.Event(),
                     owns=lambda t, i: 7)  # fmt: skip
    gc.disable()
    try:
        assert await host.invoke("busy", "a", "done", b"1") == b"1"
        async with asyncio.timeout(5):
            while host.active or host.deactivations == 0:
                await asyncio.sleep(0)  # the activation's task finishing
        await asyncio.sleep(0)  # the finished task's last references go
        (gone,) = BusyLeaver.made_refs
        assert gone() is None
    finally:
        gc.enable()


class Lingering:
    """Names its own idle time: `payload` seconds, or the host's when empty."""

    left: ClassVar[list[str]] = []

    def __init__(self, ctx: ActorContext) -> None:
        self.id = ctx.actor_id
        self.own: float | None = None

    async def on_activate(self) -> None:
        return None

    async def invoke(self, method: str, payload: bytes) -> bytes:
        self.own = float(payload) if payload else None
        return b""

    def idle_timeout_s(self) -> float | None:
        return self.own

    async def on_deactivate(self) -> None:
        Lingering.left.append(self.id)


async def test_an_actor_with_a_shorter_idle_time_of_its_own_leaves_first() -> None:
    Lingering.left = []
    host = ActorHost({"l": Lingering}, sidecar="s1", services=None, owns=lambda t, i: 7,
                     idle_timeout_s=1.0)  # fmt: skip
    await host.invoke("l", "short", "set", b"0.01")
    await host.invoke("l", "default", "set", b"")
    async with asyncio.timeout(5):
        while not Lingering.left:
            await asyncio.sleep(0.01)  # polling the host's sweep (every 0.25 s here)
    assert Lingering.left == ["short"]
    assert host.active == frozenset({("l", "default")})
    async with asyncio.timeout(5):
        while host.active:
            await asyncio.sleep(0.01)  # the host's own 1 s for the other
    assert Lingering.left == ["short", "default"]
