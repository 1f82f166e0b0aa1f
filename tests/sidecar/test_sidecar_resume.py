"""After a placement table change a sidecar wakes the running workflows it owns
(`Sidecar._resume_owned`): a change that comes while that pass runs gets a pass of its
own, since the running pass listed its workflows from the older table."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from placement.table import Table
from sidecar.actors.host import ActorHost
from sidecar.app import Sidecar
from sidecar.config import SidecarConfig


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
