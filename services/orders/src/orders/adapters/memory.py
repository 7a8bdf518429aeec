"""An in-memory `UnitOfWork`: the use cases' unit tests run on it in microseconds.

Same contract as the SQL adapter (the integration tests hold both to it): a unit of work
commits everything or nothing, and staged events are kept only if it commits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message

from orders.domain.model import DuplicateOrder, Order, OrderStatus
from orders.service_layer.unit_of_work import OrderRepository

T = TypeVar("T")


@dataclass
class _State:
    orders: dict[str, Order] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    by_request: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: list[tuple[str, Message]] = field(default_factory=list)


class InMemoryOrderRepository:
    def __init__(self, state: _State) -> None:
        self.state = state

    def add(self, order: Order, request_id: str | None, fingerprint: str) -> None:
        if order.order_id in self.state.orders or (request_id in self.state.by_request):
            raise DuplicateOrder(order.order_id)
        self.state.orders[order.order_id] = order
        self.state.seq[order.order_id] = len(self.state.seq) + 1
        if request_id:
            self.state.by_request[request_id] = (order.order_id, fingerprint)

    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        return self.state.orders.get(order_id)

    def by_request_id(self, request_id: str) -> tuple[Order, str] | None:
        if request_id not in self.state.by_request:
            return None
        order_id, fingerprint = self.state.by_request[request_id]
        return self.state.orders[order_id], fingerprint

    def list_for_customer(
        self, customer_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Order]]:
        found = sorted(
            (
                (self.state.seq[order.order_id], order)
                for order in self.state.orders.values()
                if order.customer_id == customer_id
            ),
            key=lambda pair: -pair[0],
        )
        return [pair for pair in found if before_seq is None or pair[0] < before_seq][:limit]

    def mark_cancelled(self, order_id: str, reason: str, moment: datetime) -> None:
        self.state.orders[order_id] = replace(
            self.state.orders[order_id],
            status=OrderStatus.CANCELLED,
            cancel_reason=reason,
            update_time=moment,
        )

    def stage_event(self, key: str, event: Message) -> None:
        self.state.events.append((key, event))


class InMemoryUnitOfWork:
    def __init__(self) -> None:
        self.state = _State()
        self.units: list[str] = []  # names of the committed units of work

    @property
    def events(self) -> list[tuple[str, Message]]:
        """(key, event) of every event staged by a committed unit of work."""
        return self.state.events

    async def write(self, work: Callable[[OrderRepository], T], *, name: str) -> T:
        draft = copy.deepcopy(self.state)
        result = work(InMemoryOrderRepository(draft))
        self.state = draft
        self.units.append(name)
        return result

    async def read(self, work: Callable[[OrderRepository], T]) -> T:
        return work(InMemoryOrderRepository(self.state))
