"""Session fixtures shared by every test folder: a private, real Kafka and Jaeger, and the
three services running against them as real processes.

Integration tests never touch `make run`'s stack: they use free ports and var/test/.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from shop_chassis.db import default_url
from shop_devstack.procs import free_port
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor

ROOT = Path(__file__).parent

# The test stacks must not pick up a developer's settings (a real database, another
# collector): child processes inherit this environment.
for _name in list(os.environ):
    if _name.endswith(("_DATABASE_URL", "_KAFKA_CONSUMER_GROUP")) or _name.startswith(
        ("KAFKA_", "OTEL_", "SHOP_")
    ):
        del os.environ[_name]
TEST_VAR = ROOT / "var" / "test"  # each fixture empties its own folder when it starts


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    """Real Kafka (KRaft, single node), Jaeger and Prometheus for this test session."""
    shutil.rmtree(TEST_VAR / "session", ignore_errors=True)
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


@pytest.fixture(scope="session")
async def postgres_port() -> AsyncIterator[int]:
    """A real PostgreSQL server for this session (service layers run against both databases)."""
    shutil.rmtree(TEST_VAR / "postgres", ignore_errors=True)
    stack = Stack(TEST_VAR / "postgres", Ports.free(), root=ROOT)
    supervisor = Supervisor(stack.var_dir, out=None)
    port = free_port()
    try:
        await supervisor.start(await stack.postgres(port))
        yield port
    finally:
        await supervisor.stop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_port: int) -> str:
    """An empty database of each kind, for tests of code that must work on both."""
    if request.param == "sqlite":
        return default_url(tmp_path)
    name = f"test_{uuid.uuid4().hex[:16]}"
    connection = await asyncpg.connect(host="127.0.0.1", port=postgres_port, user="postgres")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_port}/{name}"
