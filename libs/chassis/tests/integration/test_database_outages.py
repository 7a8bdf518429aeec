"""A PostgreSQL connection lost in the middle of a unit of work, on a real server."""

from __future__ import annotations

import pytest
from shop_chassis.db import DatabaseUnavailable, open_database

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_connection_the_server_drops_mid_unit_is_unavailable_and_the_next_unit_works(
    database_url: str,
) -> None:
    database = open_database(database_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="connection was closed"):
            await database.read(
                lambda c: c.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())").all()
            )
        assert await database.read(lambda c: c.exec_driver_sql("SELECT 1").scalar()) == 1
    finally:
        await database.dispose()
