"""The orders use cases on the in-memory unit of work and a fake inventory: no database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import grpc
import pytest
from orders.adapters.inventory_client import InventoryCallFailed, InventoryClient
from orders.adapters.memory import InMemoryUnitOfWork
from orders.domain.model import Line, OrderNotFound, OrderStatus, PricedLine, RequestIdReused
from orders.service_layer.ordering import Ordering


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


class FailingWrites(InMemoryUnitOfWork):
    async def write(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        raise RuntimeError("disk full")


@pytest.fixture
def uow() -> InMemoryUnitOfWork:
    return InMemoryUnitOfWork()


@pytest.fixture
def inventory() -> FakeInventory:
    return FakeInventory()


@pytest.fixture
def ordering(uow: InMemoryUnitOfWork, inventory: FakeInventory) -> Ordering:
    return Ordering(uow, cast(InventoryClient, inventory), events_committed=lambda: None)


def event_types(uow: InMemoryUnitOfWork) -> list[str]:
    return [event.DESCRIPTOR.name for _, event in uow.events]


async def test_an_order_and_its_event_are_stored_in_one_unit_of_work(
    ordering: Ordering, uow: InMemoryUnitOfWork
) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 2)], None)

    assert order.status is OrderStatus.CONFIRMED
    assert order.total_cents == 1000
    assert await ordering.get_order(order.order_id) == order
    assert event_types(uow) == ["OrderConfirmed"]
    assert uow.units == ["create_order"]


async def test_an_order_keeps_the_items_in_the_order_they_were_asked_for(
    ordering: Ordering,
) -> None:
    order = await ordering.create_order("alice", [Line("TEE-1", 1), Line("MUG-1", 3)], None)

    assert [line.sku for line in order.lines] == ["TEE-1", "MUG-1"]


async def test_a_failed_write_after_the_reservation_releases_it(
    inventory: FakeInventory,
) -> None:
    ordering = Ordering(FailingWrites(), cast(InventoryClient, inventory), events_committed=list)

    with pytest.raises(RuntimeError, match="disk full"):
        await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    assert inventory.released == inventory.reserved != []


async def test_a_repeated_request_id_returns_the_first_order_without_reserving_again(
    ordering: Ordering, inventory: FakeInventory, uow: InMemoryUnitOfWork
) -> None:
    request_id = str(uuid.uuid4())
    first = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)
    again = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)

    assert again == first
    assert inventory.reserved == [first.order_id]
    assert event_types(uow) == ["OrderConfirmed"]
    with pytest.raises(RequestIdReused):
        await ordering.create_order("alice", [Line("MUG-001", 5)], request_id)


async def test_a_retry_of_a_cancelled_order_returns_it_without_reserving_again(
    ordering: Ordering, inventory: FakeInventory
) -> None:
    request_id = str(uuid.uuid4())
    first = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)
    await ordering.cancel_order(first.order_id, "changed mind")

    again = await ordering.create_order("alice", [Line("MUG-001", 1)], request_id)

    assert again.status is OrderStatus.CANCELLED
    assert inventory.reserved == [first.order_id]


async def test_cancelling_twice_writes_one_event(
    ordering: Ordering, uow: InMemoryUnitOfWork
) -> None:
    order = await ordering.create_order("alice", [Line("MUG-001", 1)], None)

    cancelled = await ordering.cancel_order(order.order_id, "changed mind")
    again = await ordering.cancel_order(order.order_id, "again")

    assert cancelled.status is again.status is OrderStatus.CANCELLED
    assert again.cancel_reason == "changed mind"
    assert event_types(uow) == ["OrderConfirmed", "OrderCancelled"]


async def test_cancelling_an_unknown_order_is_not_found(ordering: Ordering) -> None:
    with pytest.raises(OrderNotFound):
        await ordering.cancel_order(str(uuid.uuid4()), "")


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


async def test_orders_are_listed_newest_first_page_by_page(ordering: Ordering) -> None:
    created = [await ordering.create_order("alice", [Line("MUG-001", 1)], None) for _ in range(3)]
    await ordering.create_order("bob", [Line("MUG-001", 1)], None)

    first_page = await ordering.list_orders("alice", 2, None)
    second_page = await ordering.list_orders("alice", 2, first_page[-1][0])

    assert [order for _, order in first_page + second_page] == created[::-1]
