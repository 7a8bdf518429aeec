"""Session fixtures shared by every test folder: a private, real Kafka and the services.

Integration tests never touch `make run`'s stack: they use free ports and var/test/.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from shop_devstack.procs import free_port
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor

ROOT = Path(__file__).parent


def _test_ports() -> Ports:
    ports = Ports(kafka=free_port(), kafka_controller=free_port())
    for name in SERVICES:
        ports.grpc[name] = free_port()
        ports.metrics[name] = free_port()
    return ports


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    """A real Kafka broker (KRaft, single node) for this test session."""
    var_dir = ROOT / "var" / "test"
    shutil.rmtree(var_dir, ignore_errors=True)
    stack = Stack(var_dir, _test_ports(), root=ROOT)
    supervisor = Supervisor(var_dir, out=None)
    try:
        await supervisor.start(await stack.kafka())
        yield stack
    finally:
        await supervisor.stop_all()


@pytest.fixture(scope="session")
async def services(stack: Stack) -> AsyncIterator[dict[str, str]]:
    """The three services running against the test Kafka; maps name -> gRPC address."""
    supervisor = Supervisor(stack.var_dir, out=sys.stderr if "-s" in sys.argv else None)
    try:
        for name in SERVICES:
            await supervisor.start(stack.service(name, {"OTEL_SDK_DISABLED": "true"}))
        yield {name: f"127.0.0.1:{stack.ports.grpc[name]}" for name in SERVICES}
    finally:
        await supervisor.stop_all()
