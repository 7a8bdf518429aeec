"""StockService against real SQLite and PostgreSQL databases, migrated and seeded as in
production."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from inventory.adapters.tables import outbox
from inventory.bootstrap import MIGRATIONS
from inventory.domain.model import (
    InsufficientStock,
    Line,
    ReservationMismatch,
    ReservationStatus,
    StockWouldGoNegative,
    UnknownSku,
)
from inventory.service_layer.stock import StockService
from shop.events.v1 import events_pb2
from shop_chassis.db import Database
from sqlalchemy import select


@pytest.fixture
async def stock(database_url: str) -> AsyncIterator[StockService]:
    database = Database(database_url)
    await asyncio.to_thread(database.migrate, MIGRATIONS)
    yield StockService(database, low_stock_threshold=5, events_committed=lambda: None)
    await database.dispose()


async def staged(stock: StockService) -> list[str]:
    async with stock.database.read() as connection:
        return list(await connection.scalars(select(outbox.c.event_type).order_by(outbox.c.id)))


def order_id() -> str:
    return str(uuid.uuid4())


async def test_the_seed_catalog_is_loaded_on_first_start(stock: StockService) -> None:
    products = await stock.list_products(100, None)
    assert len(products) >= 5
    assert (await stock.get_stock("LAST-ONE")).available == 1


async def test_a_reservation_holds_every_line_and_stages_stock_reserved(
    stock: StockService,
) -> None:
    reservation = await stock.reserve(order_id(), [Line("MUG-001", 2), Line("SOCKS-3P", 1)])

    assert [(r.sku, r.quantity, r.unit_price_cents) for r in reservation.lines] == [
        ("MUG-001", 2, 1200),
        ("SOCKS-3P", 1, 1800),
    ]
    mug = await stock.get_stock("MUG-001")
    assert (mug.available, mug.reserved) == (98, 2)
    assert await staged(stock) == ["StockReserved"]


async def test_a_reservation_is_all_or_nothing(stock: StockService) -> None:
    with pytest.raises(InsufficientStock) as caught:
        await stock.reserve(order_id(), [Line("MUG-001", 2), Line("LAMP-DESK", 9)])

    assert (caught.value.sku, caught.value.requested, caught.value.available) == (
        "LAMP-DESK",
        9,
        8,
    )
    assert (await stock.get_stock("MUG-001")).available == 100
    assert await staged(stock) == []


async def test_an_unknown_sku_reserves_nothing(stock: StockService) -> None:
    with pytest.raises(UnknownSku):
        await stock.reserve(order_id(), [Line("MUG-001", 1), Line("NOPE-1", 1)])
    assert (await stock.get_stock("MUG-001")).reserved == 0


async def test_two_reservations_for_the_last_unit_leave_exactly_one_winner(
    stock: StockService,
) -> None:
    results = await asyncio.gather(
        *(stock.reserve(order_id(), [Line("LAST-ONE", 1)]) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, InsufficientStock) for r in results if isinstance(r, Exception))
    level = await stock.get_stock("LAST-ONE")
    assert (level.available, level.reserved) == (0, 1)


async def test_reserving_again_for_the_same_order_holds_stock_once(stock: StockService) -> None:
    order = order_id()
    first = await stock.reserve(order, [Line("TEE-BLK-M", 3)])
    again = await stock.reserve(order, [Line("TEE-BLK-M", 3)])

    assert again == first
    assert (await stock.get_stock("TEE-BLK-M")).reserved == 3
    with pytest.raises(ReservationMismatch):
        await stock.reserve(order, [Line("TEE-BLK-M", 4)])


async def test_releasing_returns_the_stock_once(stock: StockService) -> None:
    order = order_id()
    await stock.reserve(order, [Line("BOOK-DDIA", 2)])

    released = await stock.release(order)
    again = await stock.release(order)

    assert released.status is again.status is ReservationStatus.RELEASED
    level = await stock.get_stock("BOOK-DDIA")
    assert (level.available, level.reserved) == (20, 0)
    assert await staged(stock) == ["StockReserved", "StockReleased"]


async def test_a_cancelled_order_event_releases_once_even_when_redelivered(
    stock: StockService,
) -> None:
    order = order_id()
    await stock.reserve(order, [Line("SOCKS-3P", 4)])
    event = events_pb2.OrderCancelled(event_id=str(uuid.uuid4()), order_id=order)

    await stock.on_order_cancelled(event)
    await stock.on_order_cancelled(event)

    assert (await stock.get_stock("SOCKS-3P")).available == 200
    assert await staged(stock) == ["StockReserved", "StockReleased"]


async def test_taking_stock_below_the_threshold_stages_stock_low(stock: StockService) -> None:
    await stock.reserve(order_id(), [Line("LAMP-DESK", 2)])  # 8 -> 6: not low yet
    await stock.reserve(order_id(), [Line("LAMP-DESK", 2)])  # 6 -> 4: low
    await stock.reserve(order_id(), [Line("LAMP-DESK", 1)])  # 4 -> 3: already low

    assert await staged(stock) == ["StockReserved", "StockReserved", "StockLow", "StockReserved"]


async def test_adjusting_never_takes_available_below_zero(stock: StockService) -> None:
    assert (await stock.adjust_stock("LAMP-DESK", 10, "restock")).available == 18
    with pytest.raises(StockWouldGoNegative):
        await stock.adjust_stock("LAMP-DESK", -19, "write-off")
    assert (await stock.adjust_stock("LAMP-DESK", -18, "write-off")).available == 0


async def test_a_retry_after_a_compensating_release_holds_the_stock_again(
    stock: StockService,
) -> None:
    order = order_id()
    await stock.reserve(order, [Line("MUG-001", 3)])
    await stock.release(order)

    again = await stock.reserve(order, [Line("MUG-001", 3)])

    assert again.status is ReservationStatus.HELD
    level = await stock.get_stock("MUG-001")
    assert (level.available, level.reserved) == (97, 3)


async def test_undoing_a_timed_out_attempt_leaves_a_retrys_reservation_held(
    stock: StockService,
) -> None:
    order = order_id()
    first, retry = str(uuid.uuid4()), str(uuid.uuid4())
    await stock.reserve(order, [Line("MUG-001", 2)], first)  # its caller timed out
    await stock.reserve(order, [Line("MUG-001", 2)], retry)  # the client's retry

    after_undo = await stock.release(order, first)  # the first caller compensates late

    assert after_undo.status is ReservationStatus.HELD
    assert (await stock.get_stock("MUG-001")).reserved == 2
    assert (await stock.release(order, retry)).status is ReservationStatus.RELEASED


async def test_concurrent_first_attempts_for_one_order_hold_stock_once(
    stock: StockService,
) -> None:
    order = order_id()
    results = await asyncio.gather(
        *(stock.reserve(order, [Line("SOCKS-3P", 3)], str(uuid.uuid4())) for _ in range(4))
    )
    assert all(r == results[0] for r in results)
    assert (await stock.get_stock("SOCKS-3P")).reserved == 3
