"""The service's database: an async SQLAlchemy engine, schema managed by Alembic.

SQLite files under var/<service>/ are the default (`sqlite+aiosqlite:///...`); a
PostgreSQL DSN (`postgresql+asyncpg://...`) works with the same code. Set it with
`<SERVICE>_DATABASE_URL`.

On SQLite, one service process is the only writer of its file, so write transactions
queue on an asyncio lock in the process (FIFO, no polling) and begin with
`BEGIN IMMEDIATE`, which takes SQLite's write lock up front: a transaction that reads and
then writes (check stock, then take it) cannot be overtaken, so conditional updates are
atomic on both databases (PostgreSQL uses SELECT ... FOR UPDATE). Reads use plain
deferred transactions and run beside the writer (WAL).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from mode import Service
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from shop_chassis.settings import Env
from shop_chassis.telemetry import sql_tracing_enabled


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'db.sqlite3'}"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(
            url,
            # Server databases drop idle connections; a local file does not.
            pool_pre_ping=not sqlite,
            # Each aiosqlite connection is a thread; a few keep thread hand-offs cheap, and
            # SQLite has one writer at a time anyway.
            **(
                {
                    "pool_size": Env().integer("SHOP_SQLITE_POOL_SIZE", 3, minimum=1),
                    "max_overflow": 0,
                }
                if sqlite
                else {}
            ),
        )
        self._write_lock: asyncio.Lock | None = None
        if self.is_sqlite:
            self._write_lock = asyncio.Lock()
            _make_sqlite_writes_immediate(self.engine)
        if sql_tracing_enabled():
            SQLAlchemyInstrumentor().instrument(engine=self.engine.sync_engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock, self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (rolled back at the end)."""
        async with self.engine.connect() as connection:
            await connection.execution_options(**{_READ_ONLY: True})
            yield connection

    def migrate(self, migrations: Path) -> None:
        """Bring the schema to the newest Alembic revision in `migrations`.

        Called at start-up before the event loop runs; Alembic gets a thread (and an event
        loop) of its own so the service's loop is never touched.
        """
        config = Config()
        config.set_main_option("script_location", str(migrations))
        config.set_main_option("sqlalchemy.url", self.url)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(command.upgrade, config, "head").result()

    async def dispose(self) -> None:
        await self.engine.dispose()


class DatabaseLifecycle(Service):
    """Closes the database's connections when the service stops."""

    def __init__(self, database: Database, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database

    async def on_stop(self) -> None:
        await self.database.dispose()


_READ_ONLY = "shop_read_only"


def _make_sqlite_writes_immediate(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def run_migrations(target_metadata: MetaData) -> None:
    """The body of every service's alembic env.py: migrate with the service's engine."""
    from alembic import context

    # Alembic runs in a worker thread with its own event loop, so it gets its own engine.
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "Database.migrate sets sqlalchemy.url"
    engine = create_async_engine(url, poolclass=NullPool)

    def upgrade(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        try:
            async with engine.connect() as connection:
                await connection.run_sync(upgrade)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())
