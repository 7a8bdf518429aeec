"""Session fixtures shared by every test folder: a private, real Kafka and Jaeger, and the
three services running against them as real processes; a real PostgreSQL and empty databases
of each kind; the comparison of a migrated schema with the code's metadata.

Integration tests never touch `make run`'s stack: they use free ports and var/test/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from shop_chassis.db import default_url
from shop_devstack.procs import free_port
from shop_devstack.stack import SERVICES, Ports, Stack, Supervisor
from sqlalchemy import CheckConstraint, MetaData, create_engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).parent

# The test stacks must not pick up a developer's settings (a real database, another
# collector): child processes inherit this environment.
for _name in list(os.environ):
    if _name.endswith(("_DATABASE_URL", "_KAFKA_CONSUMER_GROUP")) or _name.startswith(
        ("KAFKA_", "OTEL_", "SHOP_")
    ):
        del os.environ[_name]

# The processes the tests start take a Ctrl-C (SIGINT) as they would in a terminal. A shell
# without job control (a script's `make test &`, nohup) starts its background commands with
# SIGINT ignored, every process below inherits that, and Python keeps it ignored: `shop-stack
# logs` would sleep through the Ctrl-C a test sends it. A handler set here is reset to the
# default in each child as it starts.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
        await supervisor.start(await stack.postgres(port, fresh=True))
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


SchemaDifferences = Callable[[str, MetaData], Awaitable[list[Any]]]


@pytest.fixture
def schema_differences() -> SchemaDifferences:
    """What the database at a URL lacks or has beyond `metadata` (empty when they agree).

    Alembic's autogenerate comparison (tables, columns, types, nullability, indexes, unique
    and foreign keys), plus the CHECK constraints, by name and expression, which
    autogenerate does not compare. Server defaults are not compared: the schema has none.
    """

    async def differences(url: str, metadata: MetaData) -> list[Any]:
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool)
            try:
                with engine.connect() as connection:
                    return _schema_differences(connection, metadata)
            finally:
                engine.dispose()
        async_engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with async_engine.connect() as connection:
                return await connection.run_sync(_schema_differences, metadata)
        finally:
            await async_engine.dispose()

    return differences


def _schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    found: list[Any] = list(compare_metadata(context, metadata))
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        declared = {
            (check.name, _expression(str(check.sqltext)))
            for check in table.constraints
            if isinstance(check, CheckConstraint)
        }
        migrated = {
            (check["name"], _expression(check["sqltext"]))
            for check in inspector.get_check_constraints(table.name)
        }
        if declared != migrated:
            found.append(("check_constraints", table.name, sorted(declared), sorted(migrated)))
    return found


def _expression(sql: str) -> str:
    # PostgreSQL hands back `(available >= 0)` for `available >= 0`.
    return re.sub(r"[\s()]", "", sql)
