"""The SQL unit of work against real SQLite and PostgreSQL: the same behaviour as the
in-memory one, all or nothing, and each use case within its statement budget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from orders.adapters.inventory_client import InventoryClient
from orders.adapters.repository import SqlUnitOfWork
from orders.adapters.tables import outbox
from orders.bootstrap import MIGRATIONS
from orders.domain.model import Line, OrderNotFound, OrderStatus, PricedLine
from orders.service_layer.ordering import Ordering
from shop_chassis.db import Database, open_database
from shop_chassis.migrate import upgrade
from sqlalchemy import select, text


class FakeInventory:
    def __init__(self) -> None:
        self.released: list[str] = []

    async def reserve(
        self, order_id: str, lines: Sequence[Line], attempt_id: str
    ) -> list[PricedLine]:
        return [PricedLine(line.sku, line.quantity, 500) for line in lines]

    async def release(self, order_id: str, attempt_id: str) -> None:
        self.released.append(order_id)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    # In this process (as `python -m shop_chassis.migrate` does for a service): fast tests.
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)
    yield database
    await database.dispose()


@pytest.fixture
def inventory() -> FakeInventory:
    return FakeInventory()


@pytest.fixture
def ordering(database: Database, inventory: FakeInventory) -> Ordering:
    return Ordering(
        SqlUnitOfWork(database), cast(InventoryClient, inventory), events_committed=list
    )


async def outbox_events(database: Database) -> list[Any]:
    return await database.read(
        lambda c: list(c.scalars(select(outbox.c.event_type).order_by(outbox.c.id)))
    )


async def test_an_order_round_trips_with_its_lines_and_event(
    ordering: Ordering, database: Database
) -> None:
    order = await ordering.create_order("alice", [Line("TEE-1", 1), Line("MUG-1", 3)], None)

    assert await ordering.get_order(order.order_id) == order
    assert [o for _, o in await ordering.list_orders("alice", 10, None)] == [order]
    assert await outbox_events(database) == ["OrderConfirmed"]


async def test_a_failed_write_stores_nothing_and_releases_the_reservation(
    ordering: Ordering, database: Database, inventory: FakeInventory
) -> None:
    await database.write(lambda c: c.execute(text("DROP TABLE outbox")), name="break")

    with pytest.raises(Exception, match="outbox"):
        await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    assert len(inventory.released) == 1
    with pytest.raises(OrderNotFound):
        await ordering.get_order(inventory.released[0])


async def test_a_cancellation_is_stored_with_its_event(
    ordering: Ordering, database: Database
) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    await ordering.cancel_order(order.order_id, "changed mind")

    stored = await ordering.get_order(order.order_id)
    assert (stored.status, stored.cancel_reason) == (OrderStatus.CANCELLED, "changed mind")
    assert await outbox_events(database) == ["OrderConfirmed", "OrderCancelled"]


async def test_get_order_is_one_statement(ordering: Ordering, database: Database) -> None:
    order = await ordering.create_order("alice", [Line("TEE-1", 1), Line("MUG-1", 3)], None)

    with database.counting_statements() as counted:
        await ordering.get_order(order.order_id)

    assert counted.count == 1


async def test_create_order_is_one_write_of_three_statements(
    ordering: Ordering, database: Database
) -> None:
    with database.counting_statements() as without_request_id:
        await ordering.create_order("alice", [Line("TEE-1", 1), Line("MUG-1", 3)], None)
    with database.counting_statements() as with_request_id:
        await ordering.create_order("alice", [Line("TEE-1", 1)], str(uuid.uuid4()))

    # order row, its lines (one multi-row insert), the outbox row: in one write
    assert (without_request_id.count, without_request_id.writes) == (3, 1)
    # plus the read that makes a retry return the stored order instead of reserving again
    assert (with_request_id.count, with_request_id.writes) == (4, 1)
    assert without_request_id.uncached + with_request_id.uncached == []  # compiled once, cached


async def test_cancel_order_is_one_write_of_three_statements(
    ordering: Ordering, database: Database
) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    with database.counting_statements() as counted:
        await ordering.cancel_order(order.order_id, "changed mind")

    assert (counted.count, counted.writes) == (3, 1)  # read (locked), update, outbox row
    assert counted.uncached == []


async def test_concurrent_retries_of_one_request_store_one_order(
    ordering: Ordering, database: Database
) -> None:
    request_id = str(uuid.uuid4())

    first, second = await asyncio.gather(
        ordering.create_order("alice", [Line("MUG-001", 1)], request_id),
        ordering.create_order("alice", [Line("MUG-001", 1)], request_id),
    )

    assert first == second
    assert await outbox_events(database) == ["OrderConfirmed"]
