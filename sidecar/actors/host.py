"""Local activations: turn-based actors with a mailbox each, idle and moved-away
deactivation.

An activation is one asyncio task that owns its actor object and consumes its mailbox
one message at a time, so an actor never runs two turns at once and needs no lock. The
task activates the actor first (`on_activate`) and deactivates it when told to (a new
placement table moved it away): then it finishes the turn in progress, fails what is
still queued with `NotOwnerError` (the callers retry at the new owner) and calls
`on_deactivate`. It also ends when its mailbox stayed empty for `idle_timeout_s` (one
sweep timer per host finds those) unless the actor says it is busy with work of its own
(an optional `busy()` method: an activity actor while its activity runs, which may take
far longer than the idle timeout), or sooner when the actor names a shorter idle time of
its own (an optional `idle_timeout_s()` method: a finished workflow), or when the actor
asks to (`ActorContext.leave`); calls that arrive meanwhile go to the next activation
instead of being refused.

A turn may answer with a future instead of bytes (`Answer`: a caller waiting for a
later state of the actor): the turn ends, the mailbox moves on, and the caller gets the
future's outcome when the actor settles it; a caller that goes away cancels it.

`owns(actor_type, actor_id)` is asked before a message is queued: a sidecar never
activates an actor the current table gives to another host. A sidecar that is leaving
(`refuse_new`) activates nothing more: the table it holds no longer says what the
others will hold once placement has removed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sidecar.actors.base import (
    Actor,
    ActorCallError,
    ActorContext,
    ActorFactory,
    ActorKey,
    NotOwnerError,
    UnknownActorTypeError,
)

log = logging.getLogger(__name__)

Owns = Callable[[str, str], int | None]  # table version when owned, None when not


@dataclass(eq=False, slots=True)
class _Message:
    method: str
    payload: bytes
    reply: asyncio.Future[bytes]


class _Mailbox:
    """An activation's queue of messages (None: the marker to leave), read by its task
    alone: `asyncio.Queue` without the size bound, the putters and the task accounting
    nobody here uses (a fan-out makes one mailbox per activity)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[_Message | None] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, message: _Message | None) -> None:
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> _Message | None:
        return self._items.popleft()  # IndexError when empty, as a Queue raises QueueEmpty

    async def get(self) -> _Message | None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


@dataclass(eq=False, slots=True)
class Activation:
    key: ActorKey
    mailbox: _Mailbox = field(default_factory=_Mailbox)
    task: asyncio.Task[None] | None = None
    leaving: bool = False
    turns: int = 0
    left_on_its_own: bool = False  # `ActorContext.leave` was called, or it idled out
    idle_since: float | None = None  # loop time its mailbox went empty; None while busy
    busy: Callable[[], bool] | None = None  # the actor's own `busy()`, if it has one
    # the actor's own `idle_timeout_s()`, if it has one: None for the host's
    idle_timeout: Callable[[], float | None] | None = None


def _leave(activation: Activation) -> None:
    """The actor's own request to go (`ActorContext.leave`): its turns end after what is
    queued now. Messages that arrive behind the marker go to a new activation."""
    if not activation.left_on_its_own and not activation.leaving:
        activation.left_on_its_own = True
        activation.mailbox.put_nowait(None)


def _forward(later: asyncio.Future[bytes], reply: asyncio.Future[bytes]) -> None:
    """A reply that comes after its turn (`Answer`): `later`'s outcome goes to the caller,
    and a caller that goes away withdraws `later`."""

    def answer(done: asyncio.Future[bytes]) -> None:
        if reply.done():
            return
        if done.cancelled():
            reply.set_exception(ActorCallError("the actor withdrew its answer"))
        elif (error := done.exception()) is not None:
            reply.set_exception(error if isinstance(error, ActorCallError) else
                                ActorCallError(f"{type(error).__name__}: {error}"))  # fmt: skip
        else:
            reply.set_result(done.result())

    def withdraw(_reply: asyncio.Future[bytes]) -> None:
        if not later.done():
            later.cancel()

    later.add_done_callback(answer)
    reply.add_done_callback(withdraw)


class ActorHost:
    def __init__(
        self,
        factories: dict[str, ActorFactory],
        *,
        sidecar: str,
        services: Any,
        owns: Owns,
        idle_timeout_s: float = 60.0,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self._factories = dict(factories)
        self._sidecar = sidecar
        self.services = services  # handed to every actor's context
        self._owns = owns
        self._idle = idle_timeout_s
        self._drain = drain_timeout_s
        self._active: dict[ActorKey, Activation] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.activations = 0
        self.deactivations = 0
        self._refusing = False  # leaving: no new activations (see `refuse_new`)

    @property
    def actor_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    @property
    def active(self) -> frozenset[ActorKey]:
        return frozenset(self._active)

    async def invoke(self, actor_type: str, actor_id: str, method: str, payload: bytes) -> bytes:
        """Call the actor, activating it if this sidecar owns it: its answer."""
        return await self.submit(actor_type, actor_id, method, payload)

    def submit(
        self,
        actor_type: str,
        actor_id: str,
        method: str,
        payload: bytes,
        *,
        routed_version: int | None = None,
    ) -> asyncio.Future[bytes]:
        """Queue a call for the actor, activating it if this sidecar owns it: the future
        of its answer (a caller that stops waiting cancels it, or sets an exception, and
        the actor skips the message if it has not taken it yet).

        `routed_version`: the table version under which the caller found this sidecar to
        be the owner, in the same step (the router, which looked the owner up just
        before, with no await in between): the ownership check then need not look it up
        again."""
        if actor_type not in self._factories:
            raise UnknownActorTypeError(actor_type)
        key = (actor_type, actor_id)
        activation = self._active.get(key)
        if activation is None or activation.leaving:
            if self._refusing:
                version = None
            elif routed_version is not None:
                version = routed_version
            else:
                version = self._owns(actor_type, actor_id)
            if version is None:
                raise NotOwnerError(actor_type, actor_id, 0)
            if activation is None:
                activation = self._activate(key)
            else:
                raise NotOwnerError(actor_type, actor_id, version)
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        activation.mailbox.put_nowait(_Message(method, payload, reply))
        return reply

    def _activate(self, key: ActorKey) -> Activation:
        activation = Activation(key)
        self._active[key] = activation
        activation.task = asyncio.create_task(
            self._run(activation), name=f"actor {key[0]}/{key[1]}"
        )
        self.activations += 1
        if self._sweep is None:
            self._arm_sweep()
        return activation

    # Idle deactivation is one sweep timer for the whole host, not a timer armed and
    # cancelled around every wait of every actor (two per activity of a fan-out,
    # measured at a tenth of the event loop's Python time). An actor idle for
    # `idle_timeout_s` leaves at the next sweep: within 1.25 x the timeout.

    def _arm_sweep(self) -> None:
        period = min(max(self._idle / 4, 0.005), 5.0)
        self._sweep = asyncio.get_running_loop().call_later(period, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        if not self._active:
            return  # armed again by the next activation
        now = asyncio.get_running_loop().time()
        cutoff = now - self._idle
        for activation in self._active.values():
            since = activation.idle_since
            if since is None or not activation.mailbox.empty():
                continue
            if since > cutoff:
                own = activation.idle_timeout() if activation.idle_timeout else None
                if own is None or since > now - own:
                    continue
            if activation.busy is not None and activation.busy():
                continue  # work of its own in progress: not idle, however quiet
            _leave(activation)
        self._arm_sweep()

    async def _run(self, activation: Activation) -> None:
        actor_type, actor_id = activation.key
        ctx = ActorContext(
            actor_type, actor_id, self._sidecar, self.services, leave=partial(_leave, activation)
        )
        actor: Actor | None = None
        try:
            actor = self._factories[actor_type](ctx)
            activation.busy = getattr(actor, "busy", None)
            activation.idle_timeout = getattr(actor, "idle_timeout_s", None)
            await actor.on_activate()
            await self._turns(activation, actor)
        except Exception as exc:
            log.exception("actor %s/%s failed", actor_type, actor_id)
            self._fail_queued(activation, ActorCallError(f"activation failed: {exc!r}"))
        finally:
            activation.leaving = True
            if self._active.get(activation.key) is activation:
                del self._active[activation.key]
            if activation.mailbox.empty():
                pass  # nothing queued behind it: no owner to ask
            elif activation.left_on_its_own and self._owns(actor_type, actor_id) is not None:
                self._redeliver(activation)
            else:
                self._fail_queued(activation, NotOwnerError(actor_type, actor_id, 0))
            if actor is not None:
                with contextlib.suppress(Exception):
                    await actor.on_deactivate()
            # The actor's `leave` holds this activation: dropping the link back to the
            # actor lets both go by reference counting, not the cyclic collector.
            activation.busy = activation.idle_timeout = None
            self.deactivations += 1

    async def _turns(self, activation: Activation, actor: Actor) -> None:
        mailbox = activation.mailbox
        loop = asyncio.get_running_loop()
        while True:
            if not mailbox.empty():
                message = mailbox.get_nowait()
            else:
                activation.idle_since = loop.time()  # the sweep may now ask it to leave
                message = await mailbox.get()
                activation.idle_since = None
            if message is None:
                return  # told to leave, left on its own, or idle
            if message.reply.done():
                continue  # the caller gave up
            activation.turns += 1
            await self._turn(actor, message)

    @staticmethod
    async def _turn(actor: Actor, message: _Message) -> None:
        try:
            result = await actor.invoke(message.method, message.payload)
        except ActorCallError as exc:  # raised on purpose: its message is the answer
            if not message.reply.done():
                message.reply.set_exception(exc)
        except Exception as exc:
            if not message.reply.done():
                message.reply.set_exception(ActorCallError(f"{type(exc).__name__}: {exc}"))
        else:
            if isinstance(result, asyncio.Future):
                _forward(result, message.reply)
            elif not message.reply.done():
                message.reply.set_result(result)

    def _redeliver(self, activation: Activation) -> None:
        """Messages queued behind an actor that left on its own go, in order, to the
        activation that follows it (the one already started by a newer call, or a new
        one)."""
        successor: Activation | None = None
        while not activation.mailbox.empty():
            message = activation.mailbox.get_nowait()
            if message is None or message.reply.done():
                continue
            if successor is None:
                successor = self._active.get(activation.key) or self._activate(activation.key)
            successor.mailbox.put_nowait(message)

    def _fail_queued(self, activation: Activation, error: Exception) -> None:
        while not activation.mailbox.empty():
            message = activation.mailbox.get_nowait()
            if message is not None and not message.reply.done():
                message.reply.set_exception(error)

    def refuse_new(self) -> None:
        """From now on only actors already active here take messages; a call for any
        other is refused with `NotOwnerError` (its caller waits for a newer table). For
        a sidecar that is stopping: it drains its actors, then leaves placement; what it
        activated meanwhile would run beside the next owner's activation, and die with
        the process."""
        self._refusing = True

    async def deactivate(self, keys: Iterable[ActorKey]) -> None:
        """Finish each actor's turn in progress, then deactivate it; give up waiting after
        the drain timeout (the turns still complete, but the caller moves on)."""
        tasks = []
        for key in keys:
            activation = self._active.get(key)
            if activation is None or activation.task is None:
                continue
            activation.leaving = True
            # Queued messages go back to their callers now; the turn in progress finishes.
            self._fail_queued(activation, NotOwnerError(key[0], key[1], 0))
            activation.mailbox.put_nowait(None)
            tasks.append(activation.task)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self._drain)
            if pending:
                log.warning(
                    "%d actors still in a turn after %ss of draining", len(pending), self._drain
                )

    async def deactivate_unowned(self) -> None:
        await self.deactivate([k for k in self._active if self._owns(*k) is None])

    async def deactivate_all(self) -> None:
        await self.deactivate(list(self._active))
