"""An actor call never waits past its own deadline: not for a placement table, even when
the placement client would wait longer (`lookup_wait_s`), and not for a local actor
still busy, which ends as ActorUnavailableError like a remote owner that is too slow."""

from __future__ import annotations

import asyncio
import re

import pytest

from placement.client import ClientConfig, PlacementClient
from placement.dissemination import Operation
from placement.errors import LookupTimeoutError
from placement.table import Table, TableHost
from sidecar.actors.base import ActorContext, ActorUnavailableError
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool
from sidecar.actors.router import ActorRouter

ME = TableHost("s1", "s1", "app", "default", ("t",), 1)


def _placement() -> PlacementClient:
    # Never started: it holds no table, as when placement cannot be reached.
    return PlacementClient(ClientConfig(("127.0.0.1:1",), lookup_wait_s=60.0), ME)


async def test_a_lookup_waits_no_longer_than_asked() -> None:
    with pytest.raises(LookupTimeoutError, match=r"absent for 0\.05s"):
        await asyncio.wait_for(_placement().lookup("t", "a", wait_s=0.05), 10)


async def test_a_call_without_a_table_gives_up_at_its_deadline() -> None:
    host = ActorHost({}, sidecar="s1", services=None, owns=lambda _type, _id: None)
    router = ActorRouter(_placement(), host, PeerPool(), "s1", default_timeout_s=60.0)
    # With the lookup unbounded this would wait lookup_wait_s (60 s) and fail the
    # outer wait; bounded by the call's 0.2 s it gives up well within it.
    with pytest.raises(ActorUnavailableError, match="no owner answered in time") as raised:
        await asyncio.wait_for(router.call("t", "a", "m", b"", timeout_s=0.2), 10)
    # How long the call waited, not what was left of it for the last lookup (the
    # message said "absent for 3.33e-06s" after a 30 s wait).
    waited = re.search(r"the call waited ([0-9.e-]+)s", str(raised.value))
    assert waited is not None, raised.value
    assert 0.2 <= float(waited.group(1)) < 5, raised.value


class _Slow:
    """Answers `slow` once `hold` is set; anything else at once."""

    def __init__(self, hold: asyncio.Event) -> None:
        self.hold = hold

    async def on_activate(self) -> None:
        return None

    async def on_deactivate(self) -> None:
        return None

    async def invoke(self, method: str, payload: bytes) -> bytes:
        if method == "slow":
            await self.hold.wait()
        return b"done"


async def test_a_local_actor_past_the_deadline_is_unavailable_and_still_serves() -> None:
    placement = _placement()
    table = Table.build(1, 1, [ME])
    placement._view.apply(Operation.UPDATE, 1, 1, table)  # as a placement round would
    placement._view.apply(Operation.UNLOCK, 1, 1)
    hold = asyncio.Event()

    def slow(_ctx: ActorContext) -> _Slow:
        return _Slow(hold)

    host = ActorHost({"t": slow}, sidecar="s1", services=None, owns=lambda _type, _id: 1)
    router = ActorRouter(placement, host, PeerPool(), "s1", default_timeout_s=60.0)
    with pytest.raises(ActorUnavailableError, match="local actor did not answer within"):
        await asyncio.wait_for(router.call("t", "a", "slow", b"", timeout_s=0.2), 10)
    # The abandoned call left the actor's mailbox usable: the next message is answered.
    hold.set()
    assert await asyncio.wait_for(router.call("t", "a", "quick", b"", timeout_s=5), 10) == b"done"
