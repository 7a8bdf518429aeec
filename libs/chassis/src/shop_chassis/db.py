"""The service's database: SQLAlchemy Core statements, one hop per unit of work.

A use case hands the database one plain function that does all of its SQL on a synchronous
`Connection`; `write` runs it as one transaction, `read` as a read. The work is never split
into one await per statement, which is what made every call cost milliseconds before
(see README, "The data path").

- **SQLite** (default, `sqlite:///var/<service>/db.sqlite3`): writes run on one dedicated
  writer thread with stdlib `sqlite3` — one thread hop per unit of work, transactions one
  after another in arrival order, each begun with `BEGIN IMMEDIATE`, so a unit that reads and
  then writes (check stock, then take it) cannot be overtaken. WAL checkpoints happen inside
  commits on that thread, never on the event loop. Reads run on the event loop itself on a
  connection of their own, without BEGIN: an indexed read costs tens of microseconds, less
  than a hop to a thread, and WAL lets it run beside the writer. Each statement of a read sees
  the latest commit, so a read that needs one snapshot must be one statement.
- **PostgreSQL** (`postgresql+asyncpg://…`): the same function runs on the event loop through
  SQLAlchemy's `run_sync` over asyncpg (no thread at all); conditional updates lock rows
  with `SELECT … FOR UPDATE`.

Set the URL with `<SERVICE>_DATABASE_URL`. `statements_executed` counts what reaches the
driver, which is how the tests hold each use case to its statement budget. A unit that fails
because the database is out of reach raises `DatabaseUnavailable`; any other error is raised
as the driver or the unit raised it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sqlite3
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import structlog
from mode import Service
from opentelemetry import trace
from sqlalchemy import Engine, MetaData, Table, TextClause, bindparam, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.default import NO_CACHE_KEY
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from shop_chassis.settings import Env, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Work = Callable[[Connection], T]

log = structlog.get_logger(__name__)

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'db.sqlite3'}"


_EXPECTED_URL = "expected sqlite:///<path> or postgresql+asyncpg://<user>:<password>@<host>/<db>"


def open_database(url: str, *, variable: str = "DATABASE_URL") -> Database:
    """The database for `url`; a URL of another kind fails naming `variable`.

    The URL is logged, and shown in errors, with its password masked.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that is not a number
        raise SettingsError(f"{variable} is not a database URL: {_EXPECTED_URL}") from None
    if "@" in (parsed.host or ""):  # the first '@' of the password ended it: a part would show
        raise SettingsError(f"{variable}: an '@' in the password must be written %40")
    shown = parsed.render_as_string(hide_password=True)
    database: Database
    if url.startswith("sqlite:///"):
        database = SqliteDatabase(url)
    elif url.startswith("postgresql+asyncpg://"):
        database = PostgresDatabase(url)
    else:
        raise SettingsError(f"{variable}={shown!r}: {_EXPECTED_URL}")
    log.info("database_opened", url=shown)
    return database


def _masked(url: str) -> str:
    """`url` as logs and error messages may show it: its password, if any, is ***."""
    return make_url(url).render_as_string(hide_password=True)


class MigrationFailed(RuntimeError):
    pass


class DatabaseUnavailable(Exception):
    """The database is out of reach or stays locked: the same unit may succeed later.

    The driver's error is the __cause__. gRPC answers it UNAVAILABLE and consumers wait it
    out (`shop_chassis.errors`, `shop_chassis.events`).
    """


# What counts, decided only for errors out of `read` and `write`, so a timeout or a refused
# connection elsewhere (Kafka, another service) is never taken for the database's.
# SQLite (stdlib sqlite3, wrapped by SQLAlchemy): the primary result codes of a database that
# is there but cannot be used now: locked past busy_timeout (BUSY, LOCKED), the file or its
# folder cannot be opened (CANTOPEN), the disk failed or is full (IOERR, FULL). SQLite raises
# OperationalError for "no such table" or a syntax error too: bugs, not outages.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
    }
)
# PostgreSQL (asyncpg): SQLSTATE class 08 (connection exception), too many connections, and
# the server shutting down or starting up (57P01-57P03). asyncpg raises these itself when
# connecting; SQLAlchemy's adapter copies the SQLSTATE when it wraps them later.
_POSTGRES_UNAVAILABLE = ("08", "53300", "57P01", "57P02", "57P03")


def _unavailable(error: BaseException) -> bool:
    """Whether `error`, raised while running a unit of work, means the database is out of
    reach, rather than a bug in the unit or a constraint it broke."""
    if isinstance(error, DBAPIError):  # SQLAlchemy's wrapper of the driver's error
        # connection_invalidated: SQLAlchemy found the connection gone.
        return error.connection_invalidated or (error.orig is not None and _unavailable(error.orig))
    if isinstance(error, sqlite3.Error):  # the low byte is the primary code; some have none
        return getattr(error, "sqlite_errorcode", 0) & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_POSTGRES_UNAVAILABLE)
    # No connection to spare in time (pool), one found dead on checkout, and asyncpg's
    # socket errors: refused, reset, timed out (OSError), which nothing wraps.
    return isinstance(error, PoolTimeout | DisconnectionError | OSError)


def _raise_unavailable_or(error: Exception) -> NoReturn:
    """Raise `error` as DatabaseUnavailable if it means that, else as it is."""
    if _unavailable(error):
        raise DatabaseUnavailable(f"the database is unavailable: {error!r}") from error
    raise error


@dataclass
class StatementCount:
    count: int = 0  # statements
    writes: int = 0  # units of work written
    # statements SQLAlchemy had to compile again because they have no cache key (the SQL)
    uncached: list[str] = field(default_factory=list)


_STATEMENTS = "shop.statements"  # per connection, in Connection.info


def _counted(work: Work[T]) -> Work[tuple[T, int]]:
    """`work`, also returning how many statements it executed on its connection."""

    def run(connection: Connection) -> tuple[T, int]:
        before = connection.info.get(_STATEMENTS, 0)
        result = work(connection)
        return result, connection.info.get(_STATEMENTS, 0) - before

    return run


async def _settled(unit: Awaitable[T]) -> T:
    """Await `unit`; if the caller is cancelled meanwhile, let the unit finish first."""
    task = asyncio.ensure_future(unit)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


class Database(ABC):
    """Runs units of work; see the module docstring for how each kind does it."""

    system = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statements_executed = 0
        self.writes = 0
        self.uncached_statements: list[str] = []  # only while counting_statements() runs
        self._counting = 0
        self._counter_lock = threading.Lock()  # the writer thread and the loop both count
        self._tracer = trace.get_tracer(__name__)

    async def write(self, work: Work[T], *, name: str) -> T:
        """Run `work` as one transaction: committed if it returns, rolled back if it raises.

        Once started, a unit of work is settled before its caller hears of a cancellation:
        a caller that gives up (deadline, client gone) and then cleans up (gives stock back)
        must see whether the unit committed, never a transaction still under way.

        Inside a traced request it is one span, `db <name>`, carrying the number of
        statements it executed; background bookkeeping (no current span) is not traced.
        """
        self.writes += 1
        try:
            if not trace.get_current_span().is_recording():
                result, _ = await _settled(self._write(_counted(work)))
                return result
            with self._tracer.start_as_current_span(
                f"db {name}",
                kind=trace.SpanKind.CLIENT,
                attributes={"db.system.name": self.system, "db.operation.name": name},
            ) as span:
                result, statements = await _settled(self._write(_counted(work)))
                span.set_attribute("db.statement_count", statements)
                return result
        except Exception as error:
            _raise_unavailable_or(error)

    async def read(self, work: Work[T]) -> T:
        """Run `work` outside an explicit transaction (each statement sees committed data)."""
        try:
            return await self._read(work)
        except Exception as error:
            _raise_unavailable_or(error)

    @abstractmethod
    async def _read(self, work: Work[T]) -> T:
        """Run `work` outside an explicit transaction (the kind-specific part of `read`)."""

    @abstractmethod
    async def _write(self, work: Work[T]) -> T:
        """Run `work` in one transaction (the kind-specific part of `write`)."""

    @abstractmethod
    async def dispose(self) -> None:
        """Close every connection."""

    def migrate(self, migrations: Path) -> None:
        """Bring the schema to the newest Alembic revision in `migrations`.

        Called at start-up before the event loop runs, in a process of its own
        (`shop_chassis.migrate`); raises MigrationFailed with Alembic's output.
        """
        done = subprocess.run(
            [sys.executable, "-m", "shop_chassis.migrate", str(migrations)],
            env={**os.environ, "SHOP_MIGRATE_URL": self.url},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            output = done.stderr[-4000:]
            for spelling in {self.url, make_url(self.url).render_as_string(hide_password=False)}:
                output = output.replace(spelling, _masked(self.url))  # should a library echo it
            raise MigrationFailed(f"migrating with {migrations} failed:\n{output}")

    @contextmanager
    def counting_statements(self) -> Iterator[StatementCount]:
        """Counts the statements that reach the driver, and the write units, while the block
        runs, and names the statements SQLAlchemy compiled because it could not cache them
        (the budget tests)."""
        counted = StatementCount()
        statements, writes = self.statements_executed, self.writes
        with self._counter_lock:
            uncached = len(self.uncached_statements)
            self._counting += 1
        try:
            yield counted
        finally:
            with self._counter_lock:  # the writer thread appends to it
                self._counting -= 1
                counted.uncached = self.uncached_statements[uncached:]
                if not self._counting:
                    self.uncached_statements.clear()
            counted.count = self.statements_executed - statements
            counted.writes = self.writes - writes

    def _count_statements(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def count(connection: Connection, *args: Any) -> None:
            statement: str = args[1]
            if not statement.startswith(_TRANSACTION_CONTROL):
                connection.info[_STATEMENTS] = connection.info.get(_STATEMENTS, 0) + 1
                with self._counter_lock:
                    self.statements_executed += 1
                    context = args[3]
                    if self._counting and _compiled_every_time(context):
                        self.uncached_statements.append(statement)


class SqliteDatabase(Database):
    system = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        connect_args = {"check_same_thread": False}
        # One connection for the writer thread, one for reads on the event loop.
        self._writer_engine = create_engine(
            url, pool_size=1, max_overflow=0, connect_args=connect_args
        )
        self._reader_engine = create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            connect_args=connect_args,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )
        for engine in (self._writer_engine, self._reader_engine):
            event.listen(engine, "connect", _configure_sqlite_connection)
            self._count_statements(engine)
        event.listen(self._writer_engine, "begin", _begin_immediate)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader: Connection | None = None

    async def _write(self, work: Work[T]) -> T:
        # The copied context carries the request's span into the thread (outbox rows store it).
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, context.run, self._run_transaction, work
        )

    def _run_transaction(self, work: Work[T]) -> T:
        with self._writer_engine.begin() as connection:
            return work(connection)

    async def _read(self, work: Work[T]) -> T:
        # Reads run one at a time on the loop's thread, so one connection, kept open, serves
        # them all (a pool checkout would cost as much as the read).
        if self._reader is None:
            self._reader = self._reader_engine.connect()
        try:
            return work(self._reader)
        finally:
            if self._reader.in_transaction():
                self._reader.rollback()

    async def dispose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._writer_engine.dispose)
        self._writer.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._reader_engine.dispose()


class PostgresDatabase(Database):
    system = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # Imported here: SQLite services need none of SQLAlchemy's asyncio layer (≈ 5 MB).
        from sqlalchemy.ext.asyncio import create_async_engine

        self._engine: AsyncEngine = create_async_engine(
            url,
            pool_pre_ping=True,  # server databases drop idle connections
            pool_size=Env().integer("SHOP_DATABASE_POOL_SIZE", 10, minimum=1, maximum=200),
        )
        self._autocommit_engine = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        self._count_statements(self._engine.sync_engine)

    async def _write(self, work: Work[T]) -> T:
        async with self._engine.begin() as connection:
            return await connection.run_sync(work)

    async def _read(self, work: Work[T]) -> T:
        async with self._autocommit_engine.connect() as connection:
            return await connection.run_sync(work)

    async def dispose(self) -> None:
        await self._engine.dispose()


class DatabaseLifecycle(Service):
    """Closes the database's connections when the service stops."""

    def __init__(self, database: Database, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database

    async def on_stop(self) -> None:
        await self.database.dispose()


def _configure_sqlite_connection(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the driver, issue BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Takes SQLite's write lock up front: nothing can slip in between a unit's read and write.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# Any fixed key will do: advisory locks are per database, and each service has its own.
_MIGRATION_LOCK = 0x73686F70  # "shop"


def run_migrations(target_metadata: MetaData) -> None:
    """The body of every service's alembic env.py: migrate with an engine of its own."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "Database.migrate sets sqlalchemy.url"

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas that start together (a Deployment's pods) migrate one after another:
            # the lock is held until this transaction commits, and the next one then finds
            # the schema at head instead of creating the same tables again.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                upgrade(connection)
                connection.commit()
        finally:
            engine.dispose()
        return

    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        async_engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with async_engine.connect() as connection:
                await connection.run_sync(upgrade)
                await connection.commit()
        finally:
            await async_engine.dispose()

    # A process of its own (see Database.migrate): it may own an event loop.
    asyncio.run(run())


def _compiled_every_time(context: Any) -> bool:
    """Whether SQLAlchemy compiled this statement anew because it cannot cache it."""
    compiled = context is not None and context.compiled is not None
    return compiled and context.cache_hit is NO_CACHE_KEY


@cache
def insert_ignoring_conflicts(table: Table) -> TextClause:
    """`INSERT INTO <table> (<every column>) VALUES (...) ON CONFLICT DO NOTHING`, the same
    words on SQLite and PostgreSQL; execute it with a value for every column.

    Written as text, with each column's type on its parameter, because SQLAlchemy 2.0 cannot
    cache its dialects' `insert(...).on_conflict_do_nothing()`: it compiled that statement on
    every execution, ≈ 45-60 µs each time, the largest piece of a consumer's dedupe record in
    a profile (README, "The data path"). It also spares a SQLite service the PostgreSQL
    dialect's import (≈ 5 MiB). Names go in as they are: the shop's tables and columns need no
    quoting on either database.
    """
    columns = list(table.columns)
    names = ", ".join(column.name for column in columns)
    values = ", ".join(f":{column.name}" for column in columns)
    return text(
        f"INSERT INTO {table.name} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"
    ).bindparams(*(bindparam(column.name, type_=column.type) for column in columns))
