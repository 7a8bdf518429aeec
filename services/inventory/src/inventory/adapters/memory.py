"""An in-memory `UnitOfWork`: the use cases' unit tests run on it in microseconds.

Same contract as the SQL adapter (the integration tests hold both to it): a unit of work
commits everything or nothing, and staged events are kept only if it commits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message

from inventory.domain.model import (
    MAX_AVAILABLE,
    Product,
    ProductStock,
    Reservation,
    ReservationStatus,
    ReservedLine,
    StockLevel,
)
from inventory.service_layer.unit_of_work import StockRepository

T = TypeVar("T")


@dataclass
class _State:
    products: dict[str, Product] = field(default_factory=dict)
    levels: dict[str, StockLevel] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    last_attempts: dict[str, str | None] = field(default_factory=dict)
    processed_events: set[str] = field(default_factory=set)
    events: list[tuple[str, Message]] = field(default_factory=list)


class InMemoryStockRepository:
    def __init__(self, state: _State) -> None:
        self.state = state

    def list_products(self, limit: int, after_sku: str | None) -> list[Product]:
        skus = sorted(sku for sku in self.state.products if after_sku is None or sku > after_sku)
        return [self.state.products[sku] for sku in skus[:limit]]

    def stock_level(self, sku: str) -> StockLevel | None:
        return self.state.levels.get(sku)

    def take_stock(self, sku: str, quantity: int) -> ProductStock | None:
        return self._change_stock(sku, -quantity, quantity)

    def return_stock(self, sku: str, quantity: int) -> None:
        self._change_stock(sku, quantity, -quantity)

    def adjust_stock(self, sku: str, delta: int) -> ProductStock | None:
        return self._change_stock(sku, delta, 0)

    def reservation(self, order_id: str) -> tuple[Reservation, str | None] | None:
        if order_id not in self.state.reservations:
            return None
        return self.state.reservations[order_id], self.state.last_attempts[order_id]

    def add_reservation(self, order_id: str, attempt_id: str | None, moment: datetime) -> bool:
        if order_id in self.state.reservations:
            return False
        self.state.reservations[order_id] = Reservation(order_id, (), ReservationStatus.HELD)
        self.state.last_attempts[order_id] = attempt_id
        return True

    def add_reserved_lines(self, order_id: str, lines: Sequence[ReservedLine]) -> None:
        self.state.reservations[order_id] = replace(
            self.state.reservations[order_id],
            lines=tuple(sorted(lines, key=lambda line: line.sku)),
        )

    def set_status(
        self,
        order_id: str,
        status: ReservationStatus,
        moment: datetime,
        attempt_id: str | None = None,
    ) -> None:
        self.state.reservations[order_id] = replace(
            self.state.reservations[order_id], status=status
        )
        if attempt_id is not None:
            self.state.last_attempts[order_id] = attempt_id

    def record_attempt(self, order_id: str, attempt_id: str) -> None:
        self.state.last_attempts[order_id] = attempt_id

    def first_delivery(self, event_id: str) -> bool:
        if event_id in self.state.processed_events:
            return False
        self.state.processed_events.add(event_id)
        return True

    def stage_events(self, events: Sequence[tuple[str, Message]]) -> None:
        self.state.events.extend(events)

    def _change_stock(self, sku: str, available: int, reserved: int) -> ProductStock | None:
        level = self.state.levels.get(sku)
        if level is None or not 0 <= level.available + available <= MAX_AVAILABLE:
            return None
        after = StockLevel(sku, level.available + available, level.reserved + reserved)
        self.state.levels[sku] = after
        price = self.state.products[sku].price_cents
        return ProductStock(sku, price, after.available, after.reserved)


class InMemoryUnitOfWork:
    def __init__(self) -> None:
        self.state = _State()
        self.units: list[str] = []  # names of the committed units of work

    def add_product(self, product: Product, available: int) -> None:
        self.state.products[product.sku] = product
        self.state.levels[product.sku] = StockLevel(product.sku, available, 0)

    @property
    def events(self) -> list[tuple[str, Message]]:
        """(key, event) of every event staged by a committed unit of work."""
        return self.state.events

    async def write(self, work: Callable[[StockRepository], T], *, name: str) -> T:
        draft = copy.deepcopy(self.state)
        result = work(InMemoryStockRepository(draft))
        self.state = draft
        self.units.append(name)
        return result

    async def read(self, work: Callable[[StockRepository], T]) -> T:
        return work(InMemoryStockRepository(self.state))
