"""The port the orders use cases talk to: a repository of orders, used inside a unit of work.

A use case hands `write` one plain function that does all of its database work through an
`OrderRepository`; the adapter runs it as one transaction in one hop (see
`shop_chassis.db`). `adapters/repository.py` implements it with SQL; the unit tests use an
in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from orders.domain.model import Order

T = TypeVar("T")


class OrderRepository(Protocol):
    def add(self, order: Order, request_id: str | None, fingerprint: str) -> None:
        """Store a new order; raises `DuplicateOrder` if its id or request_id is taken."""

    def get(self, order_id: str, *, lock: bool = False) -> Order | None: ...

    def by_request_id(self, request_id: str) -> tuple[Order, str] | None:
        """The order a request_id created, with the fingerprint of that request."""

    def list_for_customer(
        self, customer_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Order]]:
        """Newest first; `before_seq` continues after the last order of the previous page."""

    def mark_cancelled(self, order_id: str, reason: str, moment: datetime) -> None: ...

    def stage_event(self, key: str, event: Message) -> None:
        """Put `event` in the outbox; it is published once the unit of work commits."""


class UnitOfWork(Protocol):
    async def write(self, work: Callable[[OrderRepository], T], *, name: str) -> T:
        """Run `work` as one transaction (all or nothing)."""

    async def read(self, work: Callable[[OrderRepository], T]) -> T:
        """Run `work`, which only reads, against committed data."""
