"""After a placement table change a sidecar wakes the running workflows it owns
(`Sidecar._resume_owned`): a change that comes while that pass runs gets a pass of its
own, since the running pass listed its workflows from the older table; a wake that
fails is tried again while the workflow is still this sidecar's; a pass that fails (the
store out of reach, a wake that failed every attempt) is run again until one succeeds."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

import sidecar.app as app_module
from placement.table import Table
from sidecar.actors.base import ActorUnavailableError
from sidecar.actors.host import ActorHost
from sidecar.app import Sidecar
from sidecar.config import SidecarConfig
from sidecar.store.base import StoreUnavailableError, Versioned


class NoActors:
    async def deactivate_unowned(self) -> None:
        return None


async def test_a_table_that_comes_during_a_resume_gets_a_pass_of_its_own() -> None:
    sidecar = Sidecar(SidecarConfig(placement=("127.0.0.1:1",)))
    sidecar.host = cast(ActorHost, NoActors())
    passes: list[int] = []
    first_running, release = asyncio.Event(), asyncio.Event()

    async def resume_owned() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            first_running.set()
            await release.wait()  # the first pass is still waking workflows

    sidecar._resume_owned = resume_owned  # type: ignore[method-assign]
    table = cast(Table, object())
    await sidecar._on_table(None, table)
    await asyncio.wait_for(first_running.wait(), 10)
    await sidecar._on_table(table, table)  # during the first pass
    await sidecar._on_table(table, table)  # folded into the same second pass
    release.set()
    task: Any = sidecar._resume_task
    await asyncio.wait_for(task, 10)
    assert passes == [0, 1]
    await sidecar._on_table(table, table)  # after both: a pass again
    await asyncio.wait_for(sidecar._resume_task or asyncio.sleep(0), 10)
    assert passes == [0, 1, 2]


class OneTable:
    async def wait_for_version(self, version: int, timeout: float) -> object:
        return object()


class IndexRows:
    """The workflow index: wf-1 and wf-2 running, wf-3 finished."""

    async def scan_prefix(self, prefix: str) -> list[tuple[str, Versioned]]:
        return [
            (prefix + "wf-1", Versioned(b"1", 1)),
            (prefix + "wf-2", Versioned(b"1", 2)),
            (prefix + "wf-3", Versioned(b"0", 3)),
        ]


class FlakyRouter:
    """`recover` for wf-1 fails the first time (a table change under way)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, actor_type: str, actor_id: str, method: str, payload: bytes,
                   *, timeout_s: float | None = None) -> bytes:  # fmt: skip
        assert method == "recover"
        self.calls.append(actor_id)
        if actor_id == "wf-1" and self.calls.count("wf-1") == 1:
            raise ActorUnavailableError("no owner answered in time")
        return b""


def _resuming_sidecar(owned: set[str]) -> tuple[Sidecar, FlakyRouter]:
    sidecar = Sidecar(SidecarConfig(placement=("127.0.0.1:1",)))
    router = FlakyRouter()
    sidecar.placement = cast(Any, OneTable())
    sidecar.store = cast(Any, IndexRows())
    sidecar.router = cast(Any, router)
    sidecar._owns = lambda actor_type, actor_id: 7 if actor_id in owned else None  # type: ignore[method-assign]
    return sidecar, router


async def test_a_running_workflow_whose_wake_fails_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "WAKE_RETRY_S", 0.0)
    sidecar, router = _resuming_sidecar(owned={"wf-1", "wf-2", "wf-3"})
    await asyncio.wait_for(sidecar._resume_owned(), 10)
    assert sorted(router.calls) == ["wf-1", "wf-1", "wf-2"]  # wf-3 is finished


async def test_a_workflow_that_moved_on_is_left_to_its_next_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "WAKE_RETRY_S", 0.0)
    sidecar, router = _resuming_sidecar(owned={"wf-1", "wf-2"})
    owned = {"wf-1", "wf-2"}

    def owns(actor_type: str, actor_id: str) -> int | None:
        if router.calls.count("wf-1") >= 1:
            owned.discard("wf-1")  # after its failed wake, another table moved it away
        return 7 if actor_id in owned else None

    sidecar._owns = owns  # type: ignore[method-assign]
    await asyncio.wait_for(sidecar._resume_owned(), 10)
    assert sorted(router.calls) == ["wf-1", "wf-2"]


class StoreBackLater(IndexRows):
    """The index cannot be read the first `down` times (etcd out of reach, say)."""

    def __init__(self, down: int) -> None:
        self.down = down

    async def scan_prefix(self, prefix: str) -> list[tuple[str, Versioned]]:
        if self.down:
            self.down -= 1
            raise StoreUnavailableError("etcd: no endpoint answered within 10s")
        return await super().scan_prefix(prefix)


async def _resume_after_a_table(sidecar: Sidecar) -> None:
    sidecar.host = cast(ActorHost, NoActors())
    await sidecar._on_table(None, cast(Table, object()))
    task: Any = sidecar._resume_task
    await asyncio.wait_for(task, 10)


async def test_a_pass_that_cannot_read_the_store_is_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "WAKE_RETRY_S", 0.0)
    sidecar, router = _resuming_sidecar(owned={"wf-1", "wf-2"})
    sidecar.store = cast(Any, StoreBackLater(down=2))
    await _resume_after_a_table(sidecar)
    assert sorted(set(router.calls)) == ["wf-1", "wf-2"]  # woken once the store answered


async def test_a_workflow_whose_every_wake_fails_is_woken_by_a_later_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "WAKE_RETRY_S", 0.0)
    sidecar, router = _resuming_sidecar(owned={"wf-1", "wf-2"})
    failures = app_module.WAKE_ATTEMPTS + 1  # one pass's attempts and one more

    async def call(actor_type: str, actor_id: str, method: str, payload: bytes,
                   *, timeout_s: float | None = None) -> bytes:  # fmt: skip
        router.calls.append(actor_id)
        if actor_id == "wf-1" and router.calls.count("wf-1") <= failures:
            raise ActorUnavailableError("no owner answered in time")
        return b""

    router.call = call  # type: ignore[method-assign]
    await _resume_after_a_table(sidecar)
    assert router.calls.count("wf-1") == failures + 1  # the last one woke it
