"""The notifier use cases: store one notification per event, list, and stream them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Histogram
from shop_chassis.outbox import now
from shop_chassis.telemetry import exemplar

from notifier.adapters.broadcast import Broadcaster
from notifier.domain.model import Notification
from notifier.service_layer.unit_of_work import NotificationRepository, UnitOfWork

log = structlog.get_logger(__name__)

event_to_notification = Histogram(
    "shop_event_to_notification_seconds",
    "From the moment an event occurred (e.g. order confirmed) to its notification stored",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

Make = Callable[[Any, datetime], Notification]


class Notifications:
    def __init__(self, uow: UnitOfWork, broadcaster: Broadcaster) -> None:
        self.uow = uow
        self.broadcaster = broadcaster

    async def record(
        self, event_id: str, event: Any, make: Make, occurred: datetime | None = None
    ) -> Notification | None:
        """Store the notification `event` makes, unless this event was stored before.

        The dedupe record and the notification are written in one unit of work, so a
        redelivered event (Kafka is at-least-once) never makes a second notification.
        """
        notification = make(event, now())

        def store(repository: NotificationRepository) -> bool:
            if not repository.first_delivery(event_id):
                return False
            repository.add(notification)
            return True

        if not await self.uow.write(store, name="store_notification"):
            log.info("event_already_processed", event_id=event_id)
            return None
        # Only now, committed: a stream never shows a notification that could still vanish.
        self.broadcaster.publish(notification)
        if occurred is not None:
            event_to_notification.labels(notification.kind.value).observe(
                max(0.0, (now() - occurred).total_seconds()), exemplar()
            )
        log.info("notification_stored", kind=notification.kind.value, event_id=event_id)
        return notification

    async def list_notifications(
        self, customer_id: str, order_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Notification]]:
        """Newest first; empty filters match everything."""
        return await self.uow.read(
            lambda repository: repository.newest_first(customer_id, order_id, limit, before_seq)
        )
