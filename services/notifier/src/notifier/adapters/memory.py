"""An in-memory `UnitOfWork`: the use cases' unit tests run on it in microseconds.

Same contract as the SQL adapter (the integration tests hold both to it): a unit of work
commits everything or nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from notifier.domain.model import Notification
from notifier.service_layer.unit_of_work import NotificationRepository

T = TypeVar("T")


@dataclass
class _State:
    notifications: list[tuple[int, Notification]] = field(default_factory=list)
    processed_events: set[str] = field(default_factory=set)


class InMemoryNotificationRepository:
    def __init__(self, state: _State) -> None:
        self.state = state

    def first_delivery(self, event_id: str) -> bool:
        if event_id in self.state.processed_events:
            return False
        self.state.processed_events.add(event_id)
        return True

    def add(self, notification: Notification) -> None:
        self.state.notifications.append((len(self.state.notifications) + 1, notification))

    def newest_first(
        self, customer_id: str, order_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Notification]]:
        return [
            (seq, notification)
            for seq, notification in reversed(self.state.notifications)
            if (not customer_id or notification.customer_id == customer_id)
            and (not order_id or notification.order_id == order_id)
            and (before_seq is None or seq < before_seq)
        ][:limit]


class InMemoryUnitOfWork:
    def __init__(self) -> None:
        self.state = _State()
        self.units: list[str] = []  # names of the committed units of work

    async def write(self, work: Callable[[NotificationRepository], T], *, name: str) -> T:
        draft = copy.deepcopy(self.state)
        result = work(InMemoryNotificationRepository(draft))
        self.state = draft
        self.units.append(name)
        return result

    async def read(self, work: Callable[[NotificationRepository], T]) -> T:
        return work(InMemoryNotificationRepository(self.state))
