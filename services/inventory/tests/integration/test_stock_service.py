"""The SQL unit of work against real SQLite and PostgreSQL databases, migrated and seeded as
in production: the same behaviour as the in-memory one, safe under concurrency, and each use
case within its statement budget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from inventory.adapters.repository import SqlUnitOfWork
from inventory.adapters.tables import outbox, processed_events
from inventory.bootstrap import MIGRATIONS
from inventory.domain.model import (
    MAX_AVAILABLE,
    InsufficientStock,
    Line,
    ReservationMismatch,
    ReservationStatus,
    StockWouldExceedMaximum,
    StockWouldGoNegative,
    UnknownSku,
)
from inventory.service_layer.stock import StockService
from shop.events.v1 import events_pb2
from shop_chassis.db import Database, open_database
from shop_chassis.migrate import upgrade
from sqlalchemy import func, select


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    # In this process (as `python -m shop_chassis.migrate` does for a service): fast tests.
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)
    yield database
    await database.dispose()


@pytest.fixture
def stock(database: Database) -> StockService:
    return StockService(SqlUnitOfWork(database), low_stock_threshold=5, events_committed=list)


async def staged(database: Database) -> list[str]:
    return await database.read(
        lambda c: list(c.scalars(select(outbox.c.event_type).order_by(outbox.c.id)))
    )


def new_id() -> str:
    return str(uuid.uuid4())


async def test_the_seed_catalog_is_loaded_on_first_start(stock: StockService) -> None:
    products = await stock.list_products(100, None)

    # The seed migration is frozen: every database starts with exactly these.
    assert [(p.sku, p.name, p.price_cents) for p in products] == [
        ("BOOK-DDIA", "Designing Data-Intensive Applications", 4500),
        ("LAMP-DESK", "Desk lamp", 3900),
        ("LAST-ONE", "Signed poster (one left)", 9900),
        ("MUG-001", "Enamel camping mug", 1200),
        ("SOCKS-3P", "Wool socks, 3 pairs", 1800),
        ("TEE-BLK-M", "Black T-shirt, M", 2500),
    ]
    levels = [await stock.get_stock(p.sku) for p in products]
    assert [(level.available, level.reserved) for level in levels] == [
        (20, 0),
        (8, 0),
        (1, 0),
        (100, 0),
        (200, 0),
        (50, 0),
    ]


async def test_products_are_listed_by_sku_page_by_page(stock: StockService) -> None:
    everything = await stock.list_products(100, None)

    first_page = await stock.list_products(2, None)
    second_page = await stock.list_products(2, first_page[-1].sku)

    assert first_page + second_page == everything[:4]


async def test_a_reservation_holds_every_line_and_stages_stock_reserved(
    stock: StockService, database: Database
) -> None:
    reservation = await stock.reserve(new_id(), [Line("SOCKS-3P", 1), Line("MUG-001", 2)])

    assert [(r.sku, r.quantity, r.unit_price_cents) for r in reservation.lines] == [
        ("MUG-001", 2, 1200),
        ("SOCKS-3P", 1, 1800),
    ]
    mug = await stock.get_stock("MUG-001")
    assert (mug.available, mug.reserved) == (98, 2)
    assert await staged(database) == ["StockReserved"]


async def test_a_reservation_is_all_or_nothing(stock: StockService, database: Database) -> None:
    with pytest.raises(InsufficientStock) as caught:
        await stock.reserve(new_id(), [Line("MUG-001", 2), Line("LAMP-DESK", 9)])

    assert (caught.value.sku, caught.value.requested, caught.value.available) == (
        "LAMP-DESK",
        9,
        8,
    )
    assert (await stock.get_stock("MUG-001")).available == 100
    assert await staged(database) == []


async def test_an_unknown_sku_reserves_nothing(stock: StockService) -> None:
    order = new_id()
    with pytest.raises(UnknownSku):
        await stock.reserve(order, [Line("MUG-001", 1), Line("NOPE-1", 1)])

    assert (await stock.get_stock("MUG-001")).reserved == 0
    # Nor is the order's reservation left behind: a later attempt can still make it.
    assert (await stock.reserve(order, [Line("MUG-001", 1)])).status is ReservationStatus.HELD


async def test_two_reservations_for_the_last_unit_leave_exactly_one_winner(
    stock: StockService,
) -> None:
    results = await asyncio.gather(
        *(stock.reserve(new_id(), [Line("LAST-ONE", 1)]) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, InsufficientStock) for r in results if isinstance(r, Exception))
    level = await stock.get_stock("LAST-ONE")
    assert (level.available, level.reserved) == (0, 1)


async def test_reserving_again_for_the_same_order_holds_stock_once(stock: StockService) -> None:
    order = new_id()
    first = await stock.reserve(order, [Line("TEE-BLK-M", 3)])
    again = await stock.reserve(order, [Line("TEE-BLK-M", 3)])

    assert again == first
    assert (await stock.get_stock("TEE-BLK-M")).reserved == 3
    with pytest.raises(ReservationMismatch):
        await stock.reserve(order, [Line("TEE-BLK-M", 4)])


async def test_releasing_returns_the_stock_once(stock: StockService, database: Database) -> None:
    order = new_id()
    await stock.reserve(order, [Line("BOOK-DDIA", 2)])

    released = await stock.release(order)
    again = await stock.release(order)

    assert released.status is again.status is ReservationStatus.RELEASED
    level = await stock.get_stock("BOOK-DDIA")
    assert (level.available, level.reserved) == (20, 0)
    assert await staged(database) == ["StockReserved", "StockReleased"]


async def test_a_cancelled_order_event_releases_once_even_when_redelivered(
    stock: StockService, database: Database
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("SOCKS-3P", 4)])
    event = events_pb2.OrderCancelled(event_id=new_id(), order_id=order)

    await stock.on_order_cancelled(event)
    await stock.on_order_cancelled(event)

    assert (await stock.get_stock("SOCKS-3P")).available == 200
    assert await staged(database) == ["StockReserved", "StockReleased"]


async def test_a_cancelled_order_without_a_reservation_is_recorded_as_handled(
    stock: StockService, database: Database
) -> None:
    await stock.on_order_cancelled(events_pb2.OrderCancelled(event_id=new_id(), order_id=new_id()))

    handled = await database.read(
        lambda c: c.scalar(select(func.count(processed_events.c.event_id)))
    )
    assert handled == 1


async def test_taking_stock_below_the_threshold_stages_stock_low(
    stock: StockService, database: Database
) -> None:
    await stock.reserve(new_id(), [Line("LAMP-DESK", 2)])  # 8 -> 6: not low yet
    await stock.reserve(new_id(), [Line("LAMP-DESK", 2)])  # 6 -> 4: low
    await stock.reserve(new_id(), [Line("LAMP-DESK", 1)])  # 4 -> 3: already low

    assert await staged(database) == [
        "StockReserved",
        "StockReserved",
        "StockLow",
        "StockReserved",
    ]


async def test_adjusting_never_takes_available_below_zero(stock: StockService) -> None:
    assert (await stock.adjust_stock("LAMP-DESK", 10, "restock")).available == 18
    with pytest.raises(StockWouldGoNegative) as caught:
        await stock.adjust_stock("LAMP-DESK", -19, "write-off")
    assert caught.value.available == 18
    assert (await stock.adjust_stock("LAMP-DESK", -18, "write-off")).available == 0


async def test_adjusting_never_takes_available_past_the_maximum(stock: StockService) -> None:
    level = await stock.adjust_stock("LAMP-DESK", 1, "restock")
    full = await stock.adjust_stock("LAMP-DESK", MAX_AVAILABLE - level.available, "restock")

    with pytest.raises(StockWouldExceedMaximum) as caught:
        await stock.adjust_stock("LAMP-DESK", 1, "restock")

    assert full.available == MAX_AVAILABLE  # still a 32-bit integer
    assert caught.value.available == MAX_AVAILABLE
    assert (await stock.get_stock("LAMP-DESK")).available == MAX_AVAILABLE


async def test_adjusting_an_unknown_sku_is_unknown(stock: StockService) -> None:
    with pytest.raises(UnknownSku):
        await stock.adjust_stock("NOPE-1", 1, "restock")


async def test_a_retry_after_a_compensating_release_holds_the_stock_again(
    stock: StockService,
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("MUG-001", 3)])
    await stock.release(order)

    again = await stock.reserve(order, [Line("MUG-001", 3)])

    assert again.status is ReservationStatus.HELD
    level = await stock.get_stock("MUG-001")
    assert (level.available, level.reserved) == (97, 3)


async def test_undoing_a_timed_out_attempt_leaves_a_retrys_reservation_held(
    stock: StockService,
) -> None:
    order = new_id()
    first, retry = new_id(), new_id()
    await stock.reserve(order, [Line("MUG-001", 2)], first)  # its caller timed out
    await stock.reserve(order, [Line("MUG-001", 2)], retry)  # the client's retry

    after_undo = await stock.release(order, first)  # the first caller compensates late

    assert after_undo.status is ReservationStatus.HELD
    assert (await stock.get_stock("MUG-001")).reserved == 2
    assert (await stock.release(order, retry)).status is ReservationStatus.RELEASED


async def test_concurrent_first_attempts_for_one_order_hold_stock_once(
    stock: StockService,
) -> None:
    order = new_id()
    results = await asyncio.gather(
        *(stock.reserve(order, [Line("SOCKS-3P", 3)], new_id()) for _ in range(4))
    )
    assert all(r == results[0] for r in results)
    assert (await stock.get_stock("SOCKS-3P")).reserved == 3


async def test_get_stock_is_one_statement(stock: StockService, database: Database) -> None:
    with database.counting_statements() as counted:
        await stock.get_stock("MUG-001")

    assert counted.count == 1


@pytest.mark.parametrize("lines", [1, 2, 3])
async def test_a_reservation_of_n_lines_is_n_plus_3_statements(
    stock: StockService, database: Database, lines: int
) -> None:
    skus = ["MUG-001", "SOCKS-3P", "LAMP-DESK"][:lines]

    with database.counting_statements() as counted:
        await stock.reserve(new_id(), [Line(sku, 3) for sku in skus], new_id())

    # the reservation with its attempt id, one conditional update per line, the lines
    # (one multi-row insert), the events (one multi-row insert, StockLow for LAMP-DESK too)
    assert counted.count == lines + 3
    assert counted.uncached == []  # each compiled once, then cached


async def test_a_repeated_reservation_is_three_statements(
    stock: StockService, database: Database
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("MUG-001", 1), Line("SOCKS-3P", 1)], new_id())

    with database.counting_statements() as counted:
        await stock.reserve(order, [Line("MUG-001", 1), Line("SOCKS-3P", 1)], new_id())

    # the insert that finds the order's reservation, the reservation with its lines, the
    # new attempt id
    assert counted.count == 3


async def test_a_retry_that_holds_a_released_reservation_again_is_n_plus_4_statements(
    stock: StockService, database: Database
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("MUG-001", 1), Line("SOCKS-3P", 1)])
    await stock.release(order)

    with database.counting_statements() as counted:
        await stock.reserve(order, [Line("MUG-001", 1), Line("SOCKS-3P", 1)], new_id())

    # the insert that finds the order's reservation, the reservation with its lines, one
    # conditional update per line, the status with the attempt id, the event
    assert counted.count == 2 + 4


async def test_a_release_of_n_lines_is_n_plus_3_statements(
    stock: StockService, database: Database
) -> None:
    order, attempt = new_id(), new_id()
    await stock.reserve(order, [Line("MUG-001", 1), Line("SOCKS-3P", 1)], attempt)

    with database.counting_statements() as counted:
        await stock.release(order, attempt)

    # the reservation with its lines, one update per line, the status, the event
    assert counted.count == 2 + 3


async def test_a_cancelled_order_event_is_one_statement_more_than_a_release(
    stock: StockService, database: Database
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("MUG-001", 1)])

    with database.counting_statements() as counted:
        await stock.on_order_cancelled(events_pb2.OrderCancelled(event_id=new_id(), order_id=order))

    assert counted.count == 1 + (1 + 3)  # recording the event id, then the release
    assert counted.uncached == []


async def test_an_adjustment_is_one_statement_and_one_more_for_stock_low(
    stock: StockService, database: Database
) -> None:
    with database.counting_statements() as restock:
        await stock.adjust_stock("LAMP-DESK", 2, "restock")
    with database.counting_statements() as write_off:
        await stock.adjust_stock("LAMP-DESK", -6, "write-off")  # 10 -> 4: low

    assert (restock.count, write_off.count) == (1, 2)
