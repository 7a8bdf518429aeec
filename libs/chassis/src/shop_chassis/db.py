"""The service's database: an async SQLAlchemy engine, schema managed by Alembic.

SQLite files under var/<service>/ are the default (`sqlite+aiosqlite:///...`); a
PostgreSQL DSN (`postgresql+asyncpg://...`) works with the same code. Set it with
`<SERVICE>_DATABASE_URL`.

On SQLite every transaction is `BEGIN IMMEDIATE`: writers queue on the database lock
(busy_timeout) instead of failing with "database is locked" when two transactions that
read first try to write at once. That makes conditional updates such as "take stock if
enough is left" atomic on both databases.
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


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'db.sqlite3'}"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        # SQLite files need no liveness check; server databases drop idle connections.
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not url.startswith("sqlite")
        )
        if self.is_sqlite:
            _make_sqlite_transactions_immediate(self.engine)
        SQLAlchemyInstrumentor().instrument(engine=self.engine.sync_engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
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


def _make_sqlite_transactions_immediate(engine: AsyncEngine) -> None:
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
        connection.exec_driver_sql("BEGIN IMMEDIATE")


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
