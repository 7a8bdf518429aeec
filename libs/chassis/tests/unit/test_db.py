"""Choosing and migrating a database (SQLite files in a temporary folder)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from shop_chassis.db import (
    DatabaseUnavailable,
    MigrationFailed,
    SqliteDatabase,
    default_url,
    insert_ignoring_conflicts,
    open_database,
)
from shop_chassis.settings import SettingsError
from shop_devstack.procs import free_port
from sqlalchemy import Column, Integer, MetaData, Table, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable


def test_a_url_of_another_kind_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="ORDERS_DATABASE_URL='mysql://x'"):
        open_database("mysql://x", variable="ORDERS_DATABASE_URL")


SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mysql://shop:{SECRET}@db/shop", "ORDERS_DATABASE_URL='mysql://shop:***@db/shop'"),
        (f"postgresql+asyncpg://shop:{SECRET}@db:port/shop", "is not a database URL"),
        (f"postgresql+asyncpg://shop:s3@{SECRET}@db/shop", "must be written %40"),
    ],
    ids=["another kind", "a port that is not a number", "an unencoded @ in the password"],
)
def test_a_refused_url_is_named_without_its_password(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as refused:
        open_database(url, variable="ORDERS_DATABASE_URL")

    assert says in str(refused.value)
    assert SECRET not in str(refused.value)
    shown_with_it = None if refused.value.__suppress_context__ else refused.value.__context__
    assert shown_with_it is None  # a traceback would print a chained parser error too


def test_an_opened_database_is_logged_with_its_password_masked() -> None:
    with structlog.testing.capture_logs() as logs:
        open_database(f"postgresql+asyncpg://shop:{SECRET}@127.0.0.1:5432/shop")

    assert logs == [
        {
            "event": "database_opened",
            "url": "postgresql+asyncpg://shop:***@127.0.0.1:5432/shop",
            "log_level": "info",
        }
    ]


def test_a_migration_runs_where_the_url_holds_a_percent_sign(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from shop_chassis.db import run_migrations\n"
        "from sqlalchemy import MetaData\n"
        "run_migrations(MetaData())\n"
    )
    folder = tmp_path / "100% sure"  # Alembic's ConfigParser took '% s' for a placeholder
    folder.mkdir()

    open_database(default_url(folder)).migrate(migrations)

    assert (folder / "db.sqlite3").exists()


def test_a_failed_migration_says_what_alembic_said(tmp_path: Path) -> None:
    database = open_database(default_url(tmp_path))

    with pytest.raises(MigrationFailed, match="Path doesn't exist"):
        database.migrate(tmp_path / "no-such-migrations")


async def test_a_unit_of_work_that_raises_leaves_nothing_behind(tmp_path: Path) -> None:
    database = open_database(default_url(tmp_path))
    assert isinstance(database, SqliteDatabase)
    await database.write(lambda c: c.execute(text("CREATE TABLE t (x INTEGER)")), name="setup")

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError):
        await database.write(insert_then_fail, name="fails")
    await database.write(lambda c: c.execute(text("INSERT INTO t VALUES (2)")), name="ok")

    assert await database.read(lambda c: c.execute(text("SELECT x FROM t")).scalars().all()) == [2]
    await database.dispose()


async def test_a_cancelled_caller_hears_of_it_only_once_its_unit_of_work_is_settled(
    tmp_path: Path,
) -> None:
    database = open_database(default_url(tmp_path))
    await database.write(lambda c: c.execute(text("CREATE TABLE t (x INTEGER)")), name="setup")
    started = threading.Event()

    def slow_insert(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        started.set()
        time.sleep(0.3)  # the caller is cancelled meanwhile

    caller = asyncio.ensure_future(database.write(slow_insert, name="slow"))
    await asyncio.to_thread(started.wait, 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    # What the caller's clean-up reads right after the cancellation: the committed row.
    assert await database.read(lambda c: c.execute(text("SELECT x FROM t")).scalars().all()) == [1]
    await database.dispose()


async def test_a_budget_counts_statements_and_write_units(tmp_path: Path) -> None:
    database = open_database(default_url(tmp_path))
    await database.write(lambda c: c.execute(text("CREATE TABLE t (x INTEGER)")), name="setup")

    def two_inserts(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        connection.execute(text("INSERT INTO t VALUES (2)"))

    with database.counting_statements() as counted:
        await database.write(two_inserts, name="two")
        await database.read(lambda c: c.execute(text("SELECT x FROM t")).all())

    assert (counted.count, counted.writes) == (3, 1)
    await database.dispose()


async def test_a_budget_names_statements_sqlalchemy_cannot_cache(tmp_path: Path) -> None:
    # SQLAlchemy 2.0 compiles its dialects' ON CONFLICT DO NOTHING on every execution; the
    # chassis's insert_ignoring_conflicts is the same statement in a form it caches.
    database = open_database(default_url(tmp_path))
    table = Table("t", MetaData(), Column("x", Integer, primary_key=True))
    await database.write(lambda c: table.metadata.create_all(c), name="setup")

    def insert_twice(statement: Executable) -> Callable[[Connection], list[int]]:
        return lambda c: [c.execute(statement, {"x": 1}).rowcount for _ in range(2)]

    with database.counting_statements() as dialects:
        inserted = await database.write(
            insert_twice(sqlite.insert(table).on_conflict_do_nothing()), name="dialect's"
        )
    assert inserted == [1, 0]
    assert dialects.uncached == ["INSERT INTO t (x) VALUES (?) ON CONFLICT DO NOTHING"] * 2

    with database.counting_statements() as chassis:
        inserted = await database.write(insert_twice(insert_ignoring_conflicts(table)), name="ours")
    assert inserted == [0, 0]  # x = 1 is there already
    assert (chassis.count, chassis.uncached) == (2, [])
    await database.dispose()


async def test_a_database_whose_folder_is_gone_is_unavailable(tmp_path: Path) -> None:
    database = open_database(default_url(tmp_path / "gone"))

    with pytest.raises(DatabaseUnavailable, match="unable to open database file"):
        await database.read(lambda c: c.execute(text("SELECT 1")).all())
    await database.dispose()


async def test_a_database_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    database = open_database(default_url(tmp_path))
    await database.write(lambda c: c.execute(text("CREATE TABLE t (x INTEGER)")), name="setup")
    other = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock

    def write_without_waiting(connection: Connection) -> None:
        connection.exec_driver_sql("PRAGMA busy_timeout=0")  # SQLITE_BUSY at once, not in 10 s
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            await database.read(write_without_waiting)
    finally:
        other.close()
        await database.dispose()


async def test_a_unit_that_names_a_missing_table_fails_as_a_bug_not_as_unavailable(
    tmp_path: Path,
) -> None:
    database = open_database(default_url(tmp_path))

    with pytest.raises(OperationalError, match="no such table"):
        await database.read(lambda c: c.execute(text("SELECT x FROM missing")).all())
    await database.dispose()


async def test_a_postgresql_server_that_refuses_connections_is_unavailable() -> None:
    database = open_database(f"postgresql+asyncpg://shop@127.0.0.1:{free_port()}/shop")

    with pytest.raises(DatabaseUnavailable) as refused:
        await database.read(lambda c: c.execute(text("SELECT 1")).all())

    assert isinstance(refused.value.__cause__, ConnectionRefusedError)
    await database.dispose()
