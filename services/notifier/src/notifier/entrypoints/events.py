"""Kafka entrypoint of the notifier: the events that become notifications."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf.message import Message
from shop.events.v1 import events_pb2
from shop_chassis.events import Delivery, Handler, PoisonEvent

from notifier.domain import model
from notifier.service_layer.notifications import Make, Notifications


def _handler(notifications: Notifications, message_type: type[Message], make: Make) -> Handler[Any]:
    async def handle(event: Any, delivery: Delivery) -> None:
        if not event.event_id:
            raise PoisonEvent(f"{delivery.event_type} without event_id")
        occurred = event.occur_time.ToDatetime(UTC) if event.HasField("occur_time") else None
        await notifications.record(event.event_id, event, make, occurred)

    return Handler(message_type, handle)


def order_event_handlers(notifications: Notifications) -> dict[str, Handler[Any]]:
    return {
        "OrderConfirmed": _handler(notifications, events_pb2.OrderConfirmed, model.order_confirmed),
        "OrderCancelled": _handler(notifications, events_pb2.OrderCancelled, model.order_cancelled),
    }


def inventory_event_handlers(notifications: Notifications) -> dict[str, Handler[Any]]:
    return {"StockLow": _handler(notifications, events_pb2.StockLow, model.stock_low)}
