"""The port the inventory use cases talk to: stock and reservations, used inside a unit of work.

A use case hands `write` one plain function that does all of its database work through a
`StockRepository`; the adapter runs it as one transaction in one hop (see
`shop_chassis.db`). `adapters/repository.py` implements it with SQL; the unit tests use an
in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from inventory.domain.model import (
    Product,
    ProductStock,
    Reservation,
    ReservationStatus,
    ReservedLine,
    StockLevel,
)

T = TypeVar("T")


class StockRepository(Protocol):
    def list_products(self, limit: int, after_sku: str | None) -> list[Product]:
        """Ordered by sku, starting after `after_sku`."""

    def stock_level(self, sku: str) -> StockLevel | None: ...

    def take_stock(self, sku: str, quantity: int) -> ProductStock | None:
        """Move `quantity` from available to reserved; None (nothing changed) if fewer are
        available or the sku is unknown. Decided and written in one step, so concurrent
        units of work can never take the same unit twice."""

    def return_stock(self, sku: str, quantity: int) -> None:
        """Move `quantity` from reserved back to available."""

    def adjust_stock(self, sku: str, delta: int) -> ProductStock | None:
        """Add `delta` to available; None (nothing changed) if that would take it below zero
        or the sku is unknown. Decided and written in one step, as `take_stock`."""

    def reservation(self, order_id: str) -> tuple[Reservation, str | None] | None:
        """The order's reservation with its latest attempt id, locked until the unit ends."""

    def add_reservation(self, order_id: str, attempt_id: str | None, moment: datetime) -> bool:
        """Start a held reservation, without lines yet (see `add_reserved_lines`); False
        (nothing changed) if the order has one, even one a concurrent unit was adding."""

    def add_reserved_lines(self, order_id: str, lines: Sequence[ReservedLine]) -> None: ...

    def set_status(
        self,
        order_id: str,
        status: ReservationStatus,
        moment: datetime,
        attempt_id: str | None = None,
    ) -> None:
        """Change the reservation's status; an `attempt_id` becomes its latest attempt."""

    def record_attempt(self, order_id: str, attempt_id: str) -> None:
        """Make `attempt_id` the order's latest attempt (see `StockService.release`)."""

    def first_delivery(self, event_id: str) -> bool:
        """Record that the event is handled; False if it was handled before."""

    def stage_events(self, events: Sequence[tuple[str, Message]]) -> None:
        """Put (key, event) pairs in the outbox; published once the unit of work commits."""


class UnitOfWork(Protocol):
    async def write(self, work: Callable[[StockRepository], T], *, name: str) -> T:
        """Run `work` as one transaction (all or nothing)."""

    async def read(self, work: Callable[[StockRepository], T]) -> T:
        """Run `work`, which only reads, against committed data."""
