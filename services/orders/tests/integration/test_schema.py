"""The schema the migrations build is the one the code declares (adapters/tables.py), on
SQLite and PostgreSQL; see `schema_differences` in the root conftest.py for what is compared."""

from __future__ import annotations

import asyncio
from typing import Any

from orders.adapters.tables import metadata
from orders.bootstrap import MIGRATIONS
from shop_chassis.migrate import upgrade


async def test_the_migrations_build_the_schema_the_code_declares(
    database_url: str, schema_differences: Any
) -> None:
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)

    assert await schema_differences(database_url, metadata) == []
