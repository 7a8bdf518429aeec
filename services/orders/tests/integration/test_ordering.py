"""Ordering against real SQLite and PostgreSQL databases, with a fake inventory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc
import pytest
from orders.adapters.inventory_client import InventoryCallFailed, InventoryClient
from orders.adapters.tables import outbox
from orders.bootstrap import MIGRATIONS
from orders.domain.model import Line, OrderNotFound, OrderStatus, PricedLine, RequestIdReused
from orders.service_layer.ordering import Ordering
from shop_chassis.db import Database
from sqlalchemy import select, text


def rpc_error(code: grpc.StatusCode) -> InventoryCallFailed:
    return InventoryCallFailed(
        grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "from the fake")
    )


class FakeInventory:
    def __init__(self) -> None:
        self.reserved: list[str] = []
        self.released: list[str] = []
        self.attempts: list[str] = []
        self.released_attempts: list[str] = []
        self.fail_with: grpc.StatusCode | None = None

    async def reserve(
        self, order_id: str, lines: Sequence[Line], attempt_id: str
    ) -> list[PricedLine]:
        self.reserved.append(order_id)
        self.attempts.append(attempt_id)
        if self.fail_with is not None:
            raise rpc_error(self.fail_with)
        return [PricedLine(line.sku, line.quantity, 500) for line in lines]

    async def release(self, order_id: str, attempt_id: str) -> None:
        self.released.append(order_id)
        self.released_attempts.append(attempt_id)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await asyncio.to_thread(database.migrate, MIGRATIONS)
    yield database
    await database.dispose()


@pytest.fixture
def inventory() -> FakeInventory:
    return FakeInventory()


@pytest.fixture
def ordering(database: Database, inventory: FakeInventory) -> Ordering:
    return Ordering(database, cast(InventoryClient, inventory), events_committed=lambda: None)


async def outbox_events(database: Database) -> list[Any]:
    async with database.read() as connection:
        return list(await connection.scalars(select(outbox.c.event_type).order_by(outbox.c.id)))


async def test_an_order_and_its_event_are_stored_together(
    ordering: Ordering, database: Database
) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 2)], None)

    assert order.status is OrderStatus.CONFIRMED
    assert order.total_cents == 1000
    assert await ordering.get_order(order.order_id) == order
    assert await outbox_events(database) == ["OrderConfirmed"]


async def test_a_failed_write_after_the_reservation_releases_it(
    ordering: Ordering, database: Database, inventory: FakeInventory
) -> None:
    async with database.transaction() as connection:
        await connection.execute(text("DROP TABLE outbox"))

    with pytest.raises(Exception, match="outbox"):
        await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    assert inventory.released == inventory.reserved != []
    with pytest.raises(OrderNotFound):
        await ordering.get_order(inventory.reserved[0])


async def test_a_repeated_request_id_returns_the_first_order_without_reserving_again(
    ordering: Ordering, inventory: FakeInventory, database: Database
) -> None:
    request_id = str(uuid.uuid4())
    first = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)
    again = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)

    assert again == first
    assert inventory.reserved == [first.order_id]
    assert await outbox_events(database) == ["OrderConfirmed"]
    with pytest.raises(RequestIdReused):
        await ordering.create_order("alice", [Line("MUG-001", 5)], request_id)


async def test_cancelling_twice_writes_one_event(ordering: Ordering, database: Database) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    cancelled = await ordering.cancel_order(order.order_id, "changed mind")
    again = await ordering.cancel_order(order.order_id, "again")

    assert cancelled.status is again.status is OrderStatus.CANCELLED
    assert again.cancel_reason == "changed mind"
    assert await outbox_events(database) == ["OrderConfirmed", "OrderCancelled"]


async def test_a_reservation_whose_outcome_is_unknown_is_given_back(
    ordering: Ordering, inventory: FakeInventory
) -> None:
    inventory.fail_with = grpc.StatusCode.DEADLINE_EXCEEDED

    with pytest.raises(InventoryCallFailed):
        await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    assert inventory.released == inventory.reserved != []
    assert inventory.released_attempts == inventory.attempts  # only its own attempt


async def test_a_refused_reservation_has_nothing_to_give_back(
    ordering: Ordering, inventory: FakeInventory
) -> None:
    inventory.fail_with = grpc.StatusCode.FAILED_PRECONDITION

    with pytest.raises(InventoryCallFailed):
        await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    assert inventory.released == []
