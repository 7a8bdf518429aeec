"""Orders: the rules, independent of gRPC, Kafka and the database."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

# Orders created with a request_id get an id derived from it, so a retry after a crash
# between "stock reserved" and "order stored" reserves the same order again, not twice.
ORDER_ID_NAMESPACE = uuid.UUID("0b6f4a53-6c1e-4f51-9d0e-5a8e1f0d2c77")


class OrderStatus(Enum):
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    lines: tuple[PricedLine, ...]
    status: OrderStatus
    create_time: datetime
    update_time: datetime
    cancel_reason: str = ""

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)


class OrderError(Exception):
    """An order rule was broken; nothing was changed."""


class OrderNotFound(OrderError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} not found")
        self.order_id = order_id


class DuplicateOrder(Exception):
    """An order with this id or request_id is stored already (a concurrent retry won)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} is stored already")
        self.order_id = order_id


class RequestIdReused(OrderError):
    """The request_id was used before for a different request (AIP-155)."""

    def __init__(self, request_id: str, order_id: str) -> None:
        super().__init__(
            f"request_id {request_id} was already used for a different request (order {order_id})"
        )
        self.request_id, self.order_id = request_id, order_id


def order_id_for(request_id: str | None) -> str:
    if request_id:
        return str(uuid.uuid5(ORDER_ID_NAMESPACE, request_id))
    return str(uuid.uuid4())


def request_fingerprint(customer_id: str, lines: Sequence[Line]) -> str:
    """Identifies what was asked, independent of item order, to compare retried requests."""
    canonical = json.dumps(
        [customer_id, sorted((line.sku, line.quantity) for line in lines)], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
