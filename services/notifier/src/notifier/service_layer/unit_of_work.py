"""The port the notifier use cases talk to: a repository of notifications, used inside a
unit of work.

A use case hands `write` one plain function that does all of its database work through a
`NotificationRepository`; the adapter runs it as one transaction in one hop (see
`shop_chassis.db`). `adapters/repository.py` implements it with SQL; the unit tests use an
in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from notifier.domain.model import Notification

T = TypeVar("T")


class NotificationRepository(Protocol):
    def first_delivery(self, event_id: str) -> bool:
        """Record that `event_id` is being handled; False if it was recorded before."""

    def add(self, notification: Notification) -> None: ...

    def newest_first(
        self, customer_id: str, order_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Notification]]:
        """Empty filters match everything; `before_seq` continues after the last
        notification of the previous page."""


class UnitOfWork(Protocol):
    async def write(self, work: Callable[[NotificationRepository], T], *, name: str) -> T:
        """Run `work` as one transaction (all or nothing)."""

    async def read(self, work: Callable[[NotificationRepository], T]) -> T:
        """Run `work`, which only reads, against committed data."""
