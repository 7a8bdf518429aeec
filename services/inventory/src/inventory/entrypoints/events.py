"""Kafka entrypoint of the inventory service: order events it reacts to."""

from __future__ import annotations

from shop.events.v1 import events_pb2
from shop_chassis.events import Delivery, Handler, PoisonEvent

from inventory.service_layer.stock import StockService


def order_event_handlers(stock: StockService) -> dict[str, Handler[events_pb2.OrderCancelled]]:
    async def order_cancelled(event: events_pb2.OrderCancelled, delivery: Delivery) -> None:
        if not event.event_id or not event.order_id:
            raise PoisonEvent("OrderCancelled without event_id or order_id")
        await stock.on_order_cancelled(event)

    return {"OrderCancelled": Handler(events_pb2.OrderCancelled, order_cancelled)}
