"""Stock and reservations: the rules, independent of gRPC, Kafka and the database."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# The most units of one product: every count stays a 32-bit integer (the API's int32 fields),
# however many restocks of up to a million units pile up.
MAX_AVAILABLE = 1_000_000_000


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int


@dataclass(frozen=True)
class StockLevel:
    sku: str
    available: int
    reserved: int


@dataclass(frozen=True)
class ProductStock:
    """A product's stock with its price: what taking stock for a reservation needs."""

    sku: str
    price_cents: int
    available: int
    reserved: int

    @property
    def level(self) -> StockLevel:
        return StockLevel(self.sku, self.available, self.reserved)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ReservedLine:
    sku: str
    quantity: int
    unit_price_cents: int


class ReservationStatus(Enum):
    HELD = "HELD"
    RELEASED = "RELEASED"


@dataclass(frozen=True)
class Reservation:
    order_id: str
    lines: tuple[ReservedLine, ...]
    status: ReservationStatus


class StockError(Exception):
    """A stock rule was broken; nothing was changed."""


class UnknownSku(StockError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"unknown sku {sku!r}")
        self.sku = sku


class InsufficientStock(StockError):
    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(f"only {available} of {sku} available, {requested} requested")
        self.sku, self.requested, self.available = sku, requested, available


class StockWouldGoNegative(StockError):
    def __init__(self, sku: str, delta: int, available: int) -> None:
        super().__init__(f"cannot adjust {sku} by {delta}: only {available} available")
        self.sku, self.delta, self.available = sku, delta, available


class StockWouldExceedMaximum(StockError):
    def __init__(self, sku: str, delta: int, available: int) -> None:
        super().__init__(
            f"cannot adjust {sku} by {delta}: {available} available, at most {MAX_AVAILABLE}"
            " allowed"
        )
        self.sku, self.delta, self.available = sku, delta, available


class UnknownReservation(StockError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no reservation for order {order_id}")
        self.order_id = order_id


class ReservationMismatch(StockError):
    """The same order id was reserved before with other items."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} already holds a reservation for other items")
        self.order_id = order_id


def crosses_low_threshold(before: int, after: int, threshold: int) -> bool:
    """True when a change takes available stock from at/above the threshold to below it."""
    return before >= threshold > after


def same_lines(held: tuple[ReservedLine, ...], requested: list[Line]) -> bool:
    return sorted((line.sku, line.quantity) for line in held) == sorted(
        (line.sku, line.quantity) for line in requested
    )
