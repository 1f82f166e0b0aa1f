"""A child process of `actorflow up`: started with its log file, optionally awaited until
it prints its `READY` line, stopped with SIGTERM (then SIGKILL after a deadline).

A child also gets SIGTERM from the kernel when `up` itself dies, however it dies
(Linux's parent-death signal): an `up` killed with SIGKILL, or by the OOM killer, used to
leave its whole cluster running, holding the ports the next `up` needs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


def _prctl() -> Any:
    """libc's prctl, looked up before any fork (the child must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    return None


_PRCTL = _prctl()


def _stop_with(parent: int) -> Callable[[], None] | None:
    """What the child runs between fork and exec: ask for SIGTERM when `parent` dies,
    and stop at once if it is already gone (it died between the fork and this call)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class StartError(RuntimeError):
    """A child process ended, or did not print READY in time, while starting."""


@dataclass(eq=False)
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def start(self, *, ready_line: bool, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if ready_line else log,
                stderr=log,
                env=self.env,
                start_new_session=True,  # our own process group: a Ctrl-C reaches `up` only
                preexec_fn=_stop_with(os.getpid()),
            )
        if not ready_line:
            return
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise StartError(self._failed("exited before READY"))
                    if line.startswith(b"READY"):
                        break
        except TimeoutError:
            raise StartError(self._failed(f"not READY in {timeout_s}s")) from None
        self._drain = asyncio.create_task(self._drain_stdout())

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await self.proc.stdout.readline():
                log.write(line)
                log.flush()

    async def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()

    def kill(self) -> None:
        if self.alive and self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)

    def _failed(self, what: str) -> str:
        return f"{self.name} {what} (log: {self.log_path}); its last lines:\n{self.tail(12)}"

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
