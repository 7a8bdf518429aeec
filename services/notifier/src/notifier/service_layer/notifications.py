"""The notifier use cases: store one notification per event, list, and stream them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Histogram
from shop_chassis.db import Database
from shop_chassis.events import first_delivery
from shop_chassis.outbox import now
from shop_chassis.telemetry import exemplar
from sqlalchemy import select

from notifier.adapters.broadcast import Broadcaster
from notifier.adapters.tables import notifications, processed_events
from notifier.domain.model import Notification, NotificationKind

log = structlog.get_logger(__name__)

event_to_notification = Histogram(
    "shop_event_to_notification_seconds",
    "From the moment an event occurred (e.g. order confirmed) to its notification stored",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

Make = Callable[[Any, datetime], Notification]


class Notifications:
    def __init__(self, database: Database, broadcaster: Broadcaster) -> None:
        self.database = database
        self.broadcaster = broadcaster

    async def record(
        self, event_id: str, event: Any, make: Make, occurred: datetime | None = None
    ) -> Notification | None:
        """Store the notification `event` makes, unless this event was stored before.

        The dedupe record and the notification are written in one transaction, so a
        redelivered event (Kafka is at-least-once) never makes a second notification.
        """
        async with self.database.transaction() as connection:
            if not await first_delivery(connection, processed_events, event_id):
                log.info("event_already_processed", event_id=event_id)
                return None
            notification = make(event, now())
            await connection.execute(
                notifications.insert().values(
                    notification_id=notification.notification_id,
                    customer_id=notification.customer_id,
                    order_id=notification.order_id,
                    kind=notification.kind.value,
                    message=notification.message,
                    source_event_id=notification.source_event_id,
                    create_time=notification.create_time,
                )
            )
        self.broadcaster.publish(notification)
        if occurred is not None:
            event_to_notification.labels(notification.kind.value).observe(
                max(0.0, (now() - occurred).total_seconds()), exemplar()
            )
        log.info("notification_stored", kind=notification.kind.value, event_id=event_id)
        return notification

    async def list(
        self, customer_id: str, order_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Notification]]:
        """Newest first; empty filters match everything."""
        query = select(notifications).order_by(notifications.c.seq.desc()).limit(limit)
        if customer_id:
            query = query.where(notifications.c.customer_id == customer_id)
        if order_id:
            query = query.where(notifications.c.order_id == order_id)
        if before_seq is not None:
            query = query.where(notifications.c.seq < before_seq)
        async with self.database.read() as connection:
            rows = (await connection.execute(query)).all()
        return [
            (
                row.seq,
                Notification(
                    notification_id=row.notification_id,
                    customer_id=row.customer_id,
                    order_id=row.order_id,
                    kind=NotificationKind(row.kind),
                    message=row.message,
                    source_event_id=row.source_event_id,
                    create_time=row.create_time
                    if row.create_time.tzinfo
                    else row.create_time.replace(tzinfo=UTC),
                ),
            )
            for row in rows
        ]
