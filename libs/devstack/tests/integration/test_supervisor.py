"""The devstack's supervisor restarts what dies, keeps down what is held, stops everything."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from shop_devstack.procs import ProcessSpec
from shop_devstack.stack import Supervisor

pytestmark = pytest.mark.integration


async def always_ready() -> bool:
    return True


def sleeper(name: str) -> ProcessSpec:
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-c", "import time; time.sleep(120)"],
        ready=always_ready,
        ports={},
        stop_timeout=5,
    )


async def until(condition: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_killed_process_is_started_again_and_counted(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, out=None)
    stop = asyncio.Event()
    process = await supervisor.start(sleeper("worker"))
    first_pid = process.pid
    watching = asyncio.create_task(supervisor.supervise(stop))
    try:
        process.signal(signal.SIGKILL)
        await until(lambda: process.pid != first_pid and not process.exited)
        assert supervisor.restarts() == {"worker": 1}
        state = json.loads(supervisor.state_file.read_text())
        assert state == [{"name": "worker", "pid": process.pid, "up": True, "restarts": 1}]
    finally:
        stop.set()
        await watching
        await supervisor.stop_all()
    assert process.exited
    assert not supervisor.state_file.exists()


async def test_a_held_process_stays_down_until_released(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, out=None)
    stop = asyncio.Event()
    process = await supervisor.start(sleeper("jaeger"))
    watching = asyncio.create_task(supervisor.supervise(stop))
    try:
        await supervisor.hold("jaeger")
        await asyncio.sleep(1.5)  # past the first restart's 1 s backoff
        assert process.exited
        await supervisor.release("jaeger")
        await process.wait_ready()
        assert not process.exited
    finally:
        stop.set()
        await watching
        await supervisor.stop_all()


async def test_stopping_everything_also_stops_a_frozen_process(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, out=None)
    frozen, *peers = await supervisor.start_together([sleeper(f"kafka-{n}") for n in (1, 2, 3)])
    frozen.signal(signal.SIGSTOP)

    await asyncio.wait_for(supervisor.stop_all(), 10)

    assert frozen.exited and all(peer.exited for peer in peers)
    assert frozen.returncode == -signal.SIGTERM
