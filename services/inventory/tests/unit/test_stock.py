"""The inventory use cases on the in-memory unit of work: no database."""

from __future__ import annotations

import uuid

import pytest
from inventory.adapters.memory import InMemoryUnitOfWork
from inventory.domain.model import (
    MAX_AVAILABLE,
    InsufficientStock,
    Line,
    Product,
    ReservationMismatch,
    ReservationStatus,
    StockWouldExceedMaximum,
    StockWouldGoNegative,
    UnknownReservation,
    UnknownSku,
)
from inventory.service_layer.stock import StockService
from shop.events.v1 import events_pb2


@pytest.fixture
def uow() -> InMemoryUnitOfWork:
    uow = InMemoryUnitOfWork()
    uow.add_product(Product("MUG-001", "Mug", 1200), available=100)
    uow.add_product(Product("SOCKS-3P", "Socks", 1800), available=200)
    uow.add_product(Product("LAMP-DESK", "Lamp", 4900), available=8)
    return uow


@pytest.fixture
def woken() -> list[str]:
    """One entry per time the outbox relay was woken."""
    return []


@pytest.fixture
def stock(uow: InMemoryUnitOfWork, woken: list[str]) -> StockService:
    return StockService(uow, low_stock_threshold=5, events_committed=lambda: woken.append("wake"))


def staged(uow: InMemoryUnitOfWork) -> list[str]:
    return [event.DESCRIPTOR.name for _, event in uow.events]


def new_id() -> str:
    return str(uuid.uuid4())


async def levels(stock: StockService, sku: str) -> tuple[int, int]:
    level = await stock.get_stock(sku)
    return level.available, level.reserved


async def test_a_reservation_holds_every_line_at_its_price_in_one_unit_of_work(
    stock: StockService, uow: InMemoryUnitOfWork, woken: list[str]
) -> None:
    reservation = await stock.reserve(new_id(), [Line("SOCKS-3P", 1), Line("MUG-001", 2)])

    assert [(r.sku, r.quantity, r.unit_price_cents) for r in reservation.lines] == [
        ("MUG-001", 2, 1200),
        ("SOCKS-3P", 1, 1800),
    ]
    assert await levels(stock, "MUG-001") == (98, 2)
    assert staged(uow) == ["StockReserved"]
    assert uow.units == ["reserve_stock"]
    assert woken == ["wake"]


async def test_a_reservation_is_all_or_nothing(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    with pytest.raises(InsufficientStock) as caught:
        await stock.reserve(new_id(), [Line("MUG-001", 2), Line("LAMP-DESK", 9)])

    assert (caught.value.sku, caught.value.requested, caught.value.available) == (
        "LAMP-DESK",
        9,
        8,
    )
    assert await levels(stock, "MUG-001") == (100, 0)
    assert staged(uow) == []


async def test_an_unknown_sku_reserves_nothing(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    with pytest.raises(UnknownSku):
        await stock.reserve(new_id(), [Line("MUG-001", 1), Line("NOPE-1", 1)])

    assert await levels(stock, "MUG-001") == (100, 0)
    assert uow.units == []


async def test_reserving_again_for_the_same_order_returns_the_held_reservation(
    stock: StockService, uow: InMemoryUnitOfWork, woken: list[str]
) -> None:
    order = new_id()
    first = await stock.reserve(order, [Line("MUG-001", 3)])

    again = await stock.reserve(order, [Line("MUG-001", 3)])

    assert again == first
    assert await levels(stock, "MUG-001") == (97, 3)
    assert staged(uow) == ["StockReserved"]
    assert woken == ["wake"]


async def test_reserving_other_items_for_a_reserved_order_is_a_mismatch(
    stock: StockService,
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("MUG-001", 3)])

    with pytest.raises(ReservationMismatch):
        await stock.reserve(order, [Line("MUG-001", 4)])
    with pytest.raises(ReservationMismatch):
        await stock.reserve(order, [Line("MUG-001", 3), Line("SOCKS-3P", 1)])


async def test_a_retry_after_a_release_holds_the_stock_again_at_the_first_price(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    order = new_id()
    first = await stock.reserve(order, [Line("MUG-001", 3)])
    await stock.release(order)
    uow.state.products["MUG-001"] = Product("MUG-001", "Mug", 1500)  # a price rise since

    again = await stock.reserve(order, [Line("MUG-001", 3)])

    assert again == first
    assert await levels(stock, "MUG-001") == (97, 3)
    assert staged(uow) == ["StockReserved", "StockReleased", "StockReserved"]


async def test_releasing_returns_the_stock_once(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("SOCKS-3P", 2), Line("MUG-001", 1)])

    released = await stock.release(order)
    again = await stock.release(order)

    assert released.status is again.status is ReservationStatus.RELEASED
    assert await levels(stock, "SOCKS-3P") == (200, 0)
    assert await levels(stock, "MUG-001") == (100, 0)
    assert staged(uow) == ["StockReserved", "StockReleased"]


async def test_releasing_an_order_without_a_reservation_is_unknown(stock: StockService) -> None:
    with pytest.raises(UnknownReservation):
        await stock.release(new_id())


async def test_undoing_a_timed_out_attempt_leaves_a_retrys_reservation_held(
    stock: StockService,
) -> None:
    order, first, retry = new_id(), new_id(), new_id()
    await stock.reserve(order, [Line("MUG-001", 2)], first)  # its caller timed out
    await stock.reserve(order, [Line("MUG-001", 2)], retry)  # the client's retry

    after_undo = await stock.release(order, first)  # the first caller compensates late

    assert after_undo.status is ReservationStatus.HELD
    assert await levels(stock, "MUG-001") == (98, 2)
    assert (await stock.release(order, retry)).status is ReservationStatus.RELEASED


async def test_a_retry_that_holds_a_released_reservation_again_becomes_the_latest_attempt(
    stock: StockService,
) -> None:
    order, first, retry = new_id(), new_id(), new_id()
    await stock.reserve(order, [Line("MUG-001", 2)], first)
    await stock.release(order, first)
    await stock.reserve(order, [Line("MUG-001", 2)], retry)

    assert (await stock.release(order, first)).status is ReservationStatus.HELD
    assert (await stock.release(order, retry)).status is ReservationStatus.RELEASED


async def test_a_cancelled_order_event_releases_once_even_when_redelivered(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    order = new_id()
    await stock.reserve(order, [Line("SOCKS-3P", 4)])
    event = events_pb2.OrderCancelled(event_id=new_id(), order_id=order)

    await stock.on_order_cancelled(event)
    await stock.on_order_cancelled(event)

    assert await levels(stock, "SOCKS-3P") == (200, 0)
    assert staged(uow) == ["StockReserved", "StockReleased"]


async def test_a_cancelled_order_without_a_reservation_is_recorded_as_handled(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    event = events_pb2.OrderCancelled(event_id=new_id(), order_id=new_id())

    await stock.on_order_cancelled(event)

    assert uow.state.processed_events == {event.event_id}
    assert staged(uow) == []


async def test_taking_stock_below_the_threshold_stages_stock_low_once(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    await stock.reserve(new_id(), [Line("LAMP-DESK", 2)])  # 8 -> 6: not low yet
    await stock.reserve(new_id(), [Line("LAMP-DESK", 2), Line("MUG-001", 1)])  # 6 -> 4: low
    await stock.reserve(new_id(), [Line("LAMP-DESK", 1)])  # 4 -> 3: already low

    assert staged(uow) == ["StockReserved", "StockReserved", "StockLow", "StockReserved"]
    low = uow.events[2]
    assert low[0] == "LAMP-DESK"
    assert isinstance(low[1], events_pb2.StockLow)
    assert (low[1].available, low[1].threshold) == (4, 5)


async def test_adjusting_never_takes_available_below_zero(
    stock: StockService, uow: InMemoryUnitOfWork
) -> None:
    assert (await stock.adjust_stock("LAMP-DESK", 10, "restock")).available == 18
    with pytest.raises(StockWouldGoNegative) as caught:
        await stock.adjust_stock("LAMP-DESK", -19, "write-off")

    assert caught.value.available == 18
    assert (await stock.adjust_stock("LAMP-DESK", -18, "write-off")).available == 0
    assert staged(uow) == ["StockLow"]
    assert uow.units == ["adjust_stock", "adjust_stock"]


async def test_adjusting_keeps_what_is_reserved(stock: StockService) -> None:
    await stock.reserve(new_id(), [Line("MUG-001", 3)])

    level = await stock.adjust_stock("MUG-001", 5, "restock")

    assert (level.available, level.reserved) == (102, 3)


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


async def test_reading_the_stock_of_an_unknown_sku_is_unknown(stock: StockService) -> None:
    with pytest.raises(UnknownSku):
        await stock.get_stock("NOPE-1")


async def test_products_are_listed_by_sku_page_by_page(stock: StockService) -> None:
    first_page = await stock.list_products(2, None)
    second_page = await stock.list_products(2, first_page[-1].sku)

    assert [p.sku for p in first_page + second_page] == ["LAMP-DESK", "MUG-001", "SOCKS-3P"]
