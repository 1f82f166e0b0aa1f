"""Route an actor call to the sidecar that owns the actor, and retry across table changes.

The owner comes from the placement client's table (a lookup waits, bounded, while the
table is locked). A local owner runs the call on this sidecar's `ActorHost`; a remote
one over the peer pool. When the callee answers NOT_OWNER (its table moved on, or ours
did), the router waits for a table at least as new as the callee's and tries again;
when the peer cannot be reached (it died), it backs off and tries again, since placement
will soon remove the dead host and give its actors to others. All within the call's
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from placement.client import PlacementClient
from placement.errors import LookupTimeoutError, NoHostsError
from sidecar.actors.base import (
    ActorCallError,
    ActorUnavailableError,
    NotOwnerError,
    UnknownActorTypeError,
)
from sidecar.actors.host import ActorHost
from sidecar.actors.peer import PeerPool
from sidecar.api.v1 import actors_pb2 as pb

log = logging.getLogger(__name__)


def _time_out(reply: asyncio.Future[bytes]) -> None:
    """A local call's deadline passed: its caller gets TimeoutError, and the actor skips
    the message if it has not taken it yet."""
    if not reply.done():
        reply.set_exception(TimeoutError())


class ActorRouter:
    def __init__(
        self,
        placement: PlacementClient,
        host: ActorHost,
        peers: PeerPool,
        self_name: str,
        *,
        default_timeout_s: float = 30.0,
    ) -> None:
        self._placement = placement
        self._host = host
        self._peers = peers
        self._self = self_name
        self._timeout = default_timeout_s
        self.retries = 0

    @property
    def default_timeout_s(self) -> float:
        """The deadline of a call that names none (the sidecar's `--call-timeout`)."""
        return self._timeout

    async def call(
        self,
        actor_type: str,
        actor_id: str,
        method: str,
        payload: bytes,
        *,
        timeout_s: float | None = None,
    ) -> bytes:
        began = time.monotonic()
        deadline = began + (timeout_s or self._timeout)
        backoff = 0.01
        last_error = "no attempt"
        while (left := deadline - time.monotonic()) > 0:
            try:
                # Waits while the table is locked or absent, never past the deadline.
                owner = await self._placement.lookup(actor_type, actor_id, wait_s=left)
            except LookupTimeoutError:
                # Its own wait is what was left of ours (microseconds, at the end): say
                # how long the call waited.
                waited = time.monotonic() - began
                last_error = f"placement table locked or absent; the call waited {waited:.3g}s"
                continue
            except NoHostsError as exc:
                raise UnknownActorTypeError(actor_type) from exc
            table = self._placement.table
            version = table.version if table else 0
            if owner.name == self._self:
                try:
                    reply = self._host.submit(
                        actor_type, actor_id, method, payload, routed_version=version
                    )
                    # A timer on the answer itself, not `asyncio.timeout` around the await:
                    # two local calls per activity of a fan-out, and the context manager
                    # costs several times the timer.
                    timer = asyncio.get_running_loop().call_later(left, _time_out, reply)
                    try:
                        return await reply
                    finally:
                        timer.cancel()
                except NotOwnerError as exc:
                    last_error = str(exc)
                    await self._newer_table(version, exc.table_version, deadline)
                    continue
                except TimeoutError:
                    # The deadline passed with the local actor still at it (the host wraps
                    # an actor's own errors): unavailable in time, as for a remote owner.
                    last_error = f"the local actor did not answer within {left:.3g}s"
                    continue
            else:
                call = pb.ActorCall(
                    call_id=self._peers.next_call_id(),
                    actor=pb.ActorRef(actor_type=actor_type, actor_id=actor_id),
                    method=method,
                    payload=payload,
                    table_version=version,
                    timeout_ms=int(left * 1000),
                )
                outcome = await self._remote(owner.address, call, left)
                if isinstance(outcome, bytes):
                    return outcome
                last_error, callee_version = outcome
                if callee_version is not None:
                    await self._newer_table(version, callee_version, deadline)
                    continue
            self.retries += 1
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))  # backoff
            backoff = min(backoff * 2, 0.5)
        raise ActorUnavailableError(
            f"{actor_type}/{actor_id}.{method}: no owner answered in time ({last_error})"
        )

    async def _remote(
        self, address: str, call: pb.ActorCall, timeout: float
    ) -> bytes | tuple[str, int | None]:
        """The result, or (why it failed, the callee's table version when it is newer)."""
        try:
            result = await self._peers.call(address, call, timeout)
        except (ConnectionError, TimeoutError, OSError) as exc:
            return f"peer {address}: {exc!r}", None
        if result.status == pb.CALL_STATUS_OK:
            return result.payload
        if result.status == pb.CALL_STATUS_NOT_OWNER:
            return result.message, result.table_version
        if result.status == pb.CALL_STATUS_ACTOR_ERROR:
            raise ActorCallError(result.message)
        if result.status == pb.CALL_STATUS_UNKNOWN_TYPE:
            raise UnknownActorTypeError(call.actor.actor_type)
        return f"peer {address}: status {result.status} {result.message}", None

    async def _newer_table(self, ours: int, theirs: int, deadline: float) -> None:
        """Wait for a table newer than the one we routed by (or at least the callee's)."""
        want = max(ours + 1, theirs)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        # On timeout, retry with what we have; the call's deadline bounds the loop.
        with contextlib.suppress(TimeoutError):
            await self._placement.wait_for_version(want, min(left, 2.0))
