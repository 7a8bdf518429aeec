"""The orders use cases: create (reserve, then store order + event atomically), cancel,
read. Events go through the outbox in the same unit of work as the order change; each use
case reaches the database through `UnitOfWork` once for its writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import grpc
import structlog
from opentelemetry import trace
from prometheus_client import Counter
from shop.events.v1 import events_pb2
from shop_chassis.outbox import new_event_id, now, timestamp

from orders.adapters.inventory_client import InventoryCallFailed, InventoryClient
from orders.domain.model import (
    DuplicateOrder,
    Line,
    Order,
    OrderNotFound,
    OrderStatus,
    RequestIdReused,
    order_id_for,
    request_fingerprint,
)
from orders.service_layer.unit_of_work import OrderRepository, UnitOfWork

log = structlog.get_logger(__name__)

orders_total = Counter("shop_orders_total", "Orders by the status they reached", ["status"])


class Ordering:
    def __init__(
        self,
        uow: UnitOfWork,
        inventory: InventoryClient,
        *,
        events_committed: Callable[[], None],
    ) -> None:
        self.uow = uow
        self.inventory = inventory
        self._events_committed = events_committed

    async def create_order(
        self, customer_id: str, lines: Sequence[Line], request_id: str | None
    ) -> Order:
        fingerprint = request_fingerprint(customer_id, lines)
        # A retry of a stored order (even a cancelled one) must not reserve stock again.
        if request_id and (earlier := await self._earlier_result(request_id, fingerprint)):
            return earlier
        order_id = order_id_for(request_id)
        trace.get_current_span().set_attribute("shop.order_id", order_id)
        # Names this call to inventory: undoing it can never undo a concurrent retry's.
        attempt_id = str(uuid.uuid4())
        try:
            priced = await self.inventory.reserve(order_id, lines, attempt_id)
        except InventoryCallFailed as error:
            # A refusal (out of stock, unknown sku) held nothing. A timeout or an outage
            # may have held stock after all: give it back, so no reservation is orphaned.
            if not error.is_refusal:
                await asyncio.shield(self._compensate(order_id, attempt_id))
            raise
        except BaseException:  # cancelled by the caller mid-call: outcome unknown
            await asyncio.shield(self._compensate(order_id, attempt_id))
            raise
        by_sku = {line.sku: line for line in priced}
        moment = now()
        order = Order(
            order_id=order_id,
            customer_id=customer_id,
            lines=tuple(by_sku[line.sku] for line in lines),
            status=OrderStatus.CONFIRMED,
            create_time=moment,
            update_time=moment,
        )
        confirmed = _order_confirmed(order)

        def store(orders: OrderRepository) -> None:
            orders.add(order, request_id, fingerprint)
            orders.stage_event(order_id, confirmed)

        try:
            await self.uow.write(store, name="create_order")
        except DuplicateOrder:
            # A concurrent retry with the same request_id stored it first; its reservation
            # is this one (same order id), so there is nothing to undo.
            if request_id and (earlier := await self._earlier_result(request_id, fingerprint)):
                return earlier
            await asyncio.shield(self._compensate(order_id, attempt_id))
            raise
        except BaseException:
            await asyncio.shield(self._compensate(order_id, attempt_id))
            raise
        self._events_committed()
        orders_total.labels("confirmed").inc()
        log.info("order_confirmed", order_id=order_id, total_cents=order.total_cents)
        return order

    async def cancel_order(self, order_id: str, reason: str) -> Order:
        trace.get_current_span().set_attribute("shop.order_id", order_id)
        moment = now()

        def cancel(orders: OrderRepository) -> tuple[Order, bool]:
            order = orders.get(order_id, lock=True)
            if order is None:
                raise OrderNotFound(order_id)
            if order.status is OrderStatus.CANCELLED:
                return order, False
            orders.mark_cancelled(order_id, reason, moment)
            orders.stage_event(
                order_id,
                events_pb2.OrderCancelled(
                    event_id=new_event_id(),
                    occur_time=timestamp(moment),
                    order_id=order_id,
                    customer_id=order.customer_id,
                    reason=reason,
                ),
            )
            return order, True

        order, changed = await self.uow.write(cancel, name="cancel_order")
        if not changed:
            return order
        self._events_committed()
        orders_total.labels("cancelled").inc()
        log.info("order_cancelled", order_id=order_id)
        return Order(
            order_id=order.order_id,
            customer_id=order.customer_id,
            lines=order.lines,
            status=OrderStatus.CANCELLED,
            create_time=order.create_time,
            update_time=moment,
            cancel_reason=reason,
        )

    async def get_order(self, order_id: str) -> Order:
        trace.get_current_span().set_attribute("shop.order_id", order_id)
        order = await self.uow.read(lambda orders: orders.get(order_id))
        if order is None:
            raise OrderNotFound(order_id)
        return order

    async def list_orders(
        self, customer_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Order]]:
        return await self.uow.read(
            lambda orders: orders.list_for_customer(customer_id, limit, before_seq)
        )

    async def _earlier_result(self, request_id: str, fingerprint: str) -> Order | None:
        found = await self.uow.read(lambda orders: orders.by_request_id(request_id))
        if found is None:
            return None
        order, earlier_fingerprint = found
        if earlier_fingerprint != fingerprint:
            raise RequestIdReused(request_id, order.order_id)
        return order

    async def _compensate(self, order_id: str, attempt_id: str) -> None:
        """The order was not stored: give this attempt's stock back (unless the order was
        stored after all, or a retry has reserved it since)."""
        try:
            if await self.uow.read(lambda orders: orders.get(order_id)) is not None:
                return
            await self.inventory.release(order_id, attempt_id)
            log.warning("reservation_released_after_failed_order", order_id=order_id)
        except InventoryCallFailed as error:
            if error.code != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: nothing was held
                log.error("compensation_failed", order_id=order_id, error=str(error))
        except Exception as exc:
            log.error("compensation_failed", order_id=order_id, error=repr(exc))


def _order_confirmed(order: Order) -> events_pb2.OrderConfirmed:
    return events_pb2.OrderConfirmed(
        event_id=new_event_id(),
        occur_time=timestamp(order.create_time),
        order_id=order.order_id,
        customer_id=order.customer_id,
        total_cents=order.total_cents,
        items=[
            events_pb2.EventItem(
                sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents
            )
            for line in order.lines
        ],
    )
