"""Notifications: what each event tells whom, independent of Kafka and the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from shop.events.v1 import events_pb2


class NotificationKind(Enum):
    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    STOCK_LOW = "STOCK_LOW"


@dataclass(frozen=True)
class Notification:
    notification_id: str
    customer_id: str  # empty for operator notifications such as STOCK_LOW
    order_id: str
    kind: NotificationKind
    message: str
    source_event_id: str
    create_time: datetime


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def order_confirmed(event: events_pb2.OrderConfirmed, moment: datetime) -> Notification:
    count = sum(item.quantity for item in event.items)
    return Notification(
        notification_id=str(uuid.uuid4()),
        customer_id=event.customer_id,
        order_id=event.order_id,
        kind=NotificationKind.ORDER_CONFIRMED,
        message=(
            f"Order {event.order_id} confirmed: {count} item(s), total {_money(event.total_cents)}"
        ),
        source_event_id=event.event_id,
        create_time=moment,
    )


def order_cancelled(event: events_pb2.OrderCancelled, moment: datetime) -> Notification:
    reason = f": {event.reason}" if event.reason else ""
    return Notification(
        notification_id=str(uuid.uuid4()),
        customer_id=event.customer_id,
        order_id=event.order_id,
        kind=NotificationKind.ORDER_CANCELLED,
        message=f"Order {event.order_id} cancelled{reason}",
        source_event_id=event.event_id,
        create_time=moment,
    )


def stock_low(event: events_pb2.StockLow, moment: datetime) -> Notification:
    return Notification(
        notification_id=str(uuid.uuid4()),
        customer_id="",
        order_id="",
        kind=NotificationKind.STOCK_LOW,
        message=f"Stock of {event.sku} is low: {event.available} left (below {event.threshold})",
        source_event_id=event.event_id,
        create_time=moment,
    )
