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


async def test_supervisors_sharing_a_var_dir_each_keep_their_own_entries(tmp_path: Path) -> None:
    platform = Supervisor(tmp_path, out=None)
    services = Supervisor(tmp_path, out=None)
    kafka = await platform.start(sleeper("kafka"))
    orders = await services.start(sleeper("orders"))

    def listed() -> dict[str, int]:
        return {e["name"]: e["pid"] for e in json.loads(platform.state_file.read_text())}

    try:
        assert listed() == {"kafka": kafka.pid, "orders": orders.pid}
        await services.stop_all()
        assert listed() == {"kafka": kafka.pid}
    finally:
        await services.stop_all()
        await platform.stop_all()
    assert not platform.state_file.exists()


async def test_entries_of_a_supervisor_that_died_are_dropped(tmp_path: Path) -> None:
    gone = {"name": "kafka", "pid": 2**22 + 1, "up": True, "restarts": 0}  # above pid_max
    (tmp_path / "processes.json").write_text(json.dumps([gone]))
    supervisor = Supervisor(tmp_path, out=None)
    try:
        orders = await supervisor.start(sleeper("orders"))
        state = json.loads(supervisor.state_file.read_text())
        assert [(e["name"], e["pid"]) for e in state] == [("orders", orders.pid)]
    finally:
        await supervisor.stop_all()
