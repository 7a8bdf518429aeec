"""Child processes that are started in their own process group, have their output
prefixed and streamed, and are stopped (TERM, then KILL) as a group."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

Probe = Callable[[], Awaitable[bool]]

COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93"]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, get SIGTERM if the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    ready: Probe
    ports: Mapping[str, int]  # what the process listens on, by role, for the port check
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout: float = 90.0
    stop_timeout: float = 20.0
    user: str | None = None  # run as this user (we are root)
    stop_signal: signal.Signals = signal.SIGTERM
    signal_group: bool = True  # False: the stop signal goes to the process alone


def as_is(line: str) -> str:
    return line


class Process:
    def __init__(
        self,
        spec: ProcessSpec,
        index: int,
        out: TextIO | None,
        log_file: Path,
        render: Callable[[str], str] = as_is,
    ) -> None:
        self.spec = spec
        self._out = out
        self._log_file = log_file
        self._render = render  # how a line of output is shown on `out` (the log file has it raw)
        colour = COLOURS[index % len(COLOURS)]
        self._prefix = (
            f"\033[{colour}m{spec.name:<10}|\033[0m "
            if out and out.isatty()
            else (f"{spec.name:<10}| ")
        )
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self.restarts = 0
        self.peers: list[Process] = []  # started together, to be stopped together
        self.held = False  # stopped on purpose: not to be restarted
        self.backoff = 0.0
        self._started_at = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started_at if self.proc is not None else 0.0

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process's whole group (a JVM's threads' helpers, a shell's
        children too)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def start(self) -> None:
        await self._finish_pump()  # a restart: the previous run's output is all copied
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            env={**os.environ, **self.spec.env},
            cwd=self.spec.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            user=self.spec.user,
            group=self.spec.user,
            extra_groups=[] if self.spec.user else None,
        )
        self._pump = asyncio.create_task(self._copy_output())

    async def _copy_output(self) -> None:
        """Copy the child's output to its log file and, line by line, to `out`.

        Reads chunks rather than lines, so a very long line (a big traceback) can never
        stop the copying and leave the child blocked on a full pipe.
        """
        assert self.proc is not None and self.proc.stdout is not None
        pending = b""
        with self._log_file.open("ab") as log:
            while chunk := await self.proc.stdout.read(65536):
                log.write(chunk)
                log.flush()
                if self._out is None:
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._out.write(
                        self._prefix + self._render(line.decode(errors="replace")) + "\n"
                    )
                self._out.flush()
            if pending and self._out is not None:
                self._out.write(
                    self._prefix + self._render(pending.decode(errors="replace")) + "\n"
                )

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.start_timeout
        while loop.time() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise StackError(
                    f"{self.spec.name} exited with code {self.proc.returncode}"
                    f" while starting; its output is in {self._log_file}"
                )
            with contextlib.suppress(Exception):
                if await self.spec.ready():
                    return
            await asyncio.sleep(0.25)
        raise StackError(
            f"{self.spec.name} was not ready after {self.spec.start_timeout:.0f} s;"
            f" its output is in {self._log_file}"
        )

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            await self._finish_pump()
            return
        with contextlib.suppress(ProcessLookupError):
            if self.spec.signal_group:
                os.killpg(self.proc.pid, self.spec.stop_signal)
            else:
                os.kill(self.proc.pid, self.spec.stop_signal)
            os.killpg(self.proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) one must wake to exit
        try:
            await asyncio.wait_for(self.proc.wait(), self.spec.stop_timeout)
        except TimeoutError:
            print(
                f"{self.spec.name}: no exit after {self.spec.stop_timeout:.0f} s, killing",
                file=sys.stderr,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        await self._finish_pump()

    async def _finish_pump(self) -> None:
        if self._pump is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._pump, 5)


class StackError(RuntimeError):
    """The stack could not be started; the message says what to do."""
