"""`counter`: a test actor type (enabled with `--test-actors`).

Each turn of `increment` adds one to the actor's count unless the request id was applied
before (callers retry, so increments carry ids), saves the state, and appends
`actor_id start_ns end_ns sidecar` to the sidecar's turn log. The single-activation test
reads every sidecar's log: two turns of one actor that overlap in time on different
sidecars would mean the actor was active twice. `get` returns the count. A reminder
firing (the runtime's `__reminder__` method) is counted per reminder name and saved;
`reminders` returns those counts as JSON.

The state is written back without a version check on purpose: if an actor were ever
active on two sidecars at once, increments would be lost and the final count would show
it, independently of the log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

import msgpack

from sidecar.actors.base import REMINDER_METHOD, ActorContext

ACTOR_TYPE = "counter"


class _Services(Protocol):
    @property
    def store(self) -> Any: ...

    @property
    def app_id(self) -> str: ...

    @property
    def turn_log(self) -> Any: ...


class CounterActor:
    def __init__(self, ctx: ActorContext) -> None:
        self._ctx = ctx
        services: _Services = ctx.services
        self._store = services.store
        self._key = f"{services.app_id}||{ctx.actor_type}||{ctx.actor_id}||state"
        self._log = services.turn_log
        self.count = 0
        self.seen: set[str] = set()
        self.reminded: dict[str, int] = {}

    async def on_activate(self) -> None:
        found = await self._store.get_many([self._key])
        if self._key in found:
            state = msgpack.unpackb(found[self._key].value)
            self.count, self.seen = int(state["count"]), set(state["seen"])
            self.reminded = dict(state.get("reminded", {}))

    async def invoke(self, method: str, payload: bytes) -> bytes:
        start = time.time_ns()
        try:
            if method == "increment":
                request_id = payload.decode()
                if request_id not in self.seen:
                    self.count += 1
                    self.seen.add(request_id)
                    await self._save()
            elif method == REMINDER_METHOD:
                name = str(msgpack.unpackb(payload)["name"])
                self.reminded[name] = self.reminded.get(name, 0) + 1
                await self._save()
            elif method == "reminders":
                return json.dumps(self.reminded).encode()
            elif method != "get":
                raise ValueError(f"unknown method {method!r}")
            return str(self.count).encode()
        finally:
            if self._log is not None:
                self._log.write(
                    f"{self._ctx.actor_id} {start} {time.time_ns()} {self._ctx.sidecar}\n"
                )

    async def _save(self) -> None:
        state = {"count": self.count, "seen": sorted(self.seen), "reminded": self.reminded}
        await self._store.transact({self._key: msgpack.packb(state)})

    async def on_deactivate(self) -> None:
        if self._log is not None:
            self._log.flush()


def open_turn_log(path: Path | None) -> Any:
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", buffering=1)  # line-buffered: survives SIGKILL up to the last line
