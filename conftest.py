"""Session fixtures shared by every test folder: a private, real Kafka and Jaeger, and the
three services running against them as real processes.

Integration tests never touch `make run`'s stack: they use free ports and var/test/.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor

ROOT = Path(__file__).parent
TEST_VAR = ROOT / "var" / "test"  # removed at the start of each session


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    """Real Kafka (KRaft, single node), Jaeger and Prometheus for this test session."""
    shutil.rmtree(TEST_VAR, ignore_errors=True)
    stack = Stack(TEST_VAR / "session", Ports.free(), root=ROOT)
    supervisor = Supervisor(stack.var_dir, out=None)
    try:
        await supervisor.start(await stack.kafka())
        await supervisor.start(stack.jaeger())
        await supervisor.start(stack.prometheus())
        yield stack
    finally:
        await supervisor.stop_all()


@pytest.fixture(scope="session")
async def services(stack: Stack) -> AsyncIterator[dict[str, str]]:
    """The three services against the session's Kafka; maps name -> gRPC address."""
    supervisor = Supervisor(stack.var_dir, out=sys.stderr if "-s" in sys.argv else None)
    try:
        for name in SERVICES:
            await supervisor.start(stack.service(name, {"OTEL_BSP_SCHEDULE_DELAY": "200"}))
        yield {name: f"127.0.0.1:{stack.ports.grpc[name]}" for name in SERVICES}
    finally:
        await supervisor.stop_all()
