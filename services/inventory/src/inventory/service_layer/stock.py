"""The inventory use cases: list and read stock, adjust it, reserve and release it for
orders. Each change is one unit of work, and the events it causes go to the outbox in that
same unit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog
from google.protobuf.message import Message
from prometheus_client import Counter
from shop.events.v1 import events_pb2
from shop_chassis.outbox import new_event_id, now, timestamp

from inventory.domain.model import (
    MAX_AVAILABLE,
    InsufficientStock,
    Line,
    Product,
    Reservation,
    ReservationMismatch,
    ReservationStatus,
    ReservedLine,
    StockError,
    StockLevel,
    StockWouldExceedMaximum,
    StockWouldGoNegative,
    UnknownReservation,
    UnknownSku,
    crosses_low_threshold,
    same_lines,
)
from inventory.service_layer.unit_of_work import StockRepository, UnitOfWork

log = structlog.get_logger(__name__)

reservations_rejected = Counter(
    "shop_stock_reservations_rejected_total", "Reservations refused, by reason", ["reason"]
)

Staged = list[tuple[str, Message]]  # (key, event) put in the outbox by a unit of work


class StockService:
    def __init__(
        self, uow: UnitOfWork, *, low_stock_threshold: int, events_committed: Callable[[], None]
    ) -> None:
        self.uow = uow
        self.low_stock_threshold = low_stock_threshold
        self._events_committed = events_committed

    async def list_products(self, page_size: int, after_sku: str | None) -> list[Product]:
        return await self.uow.read(lambda stock: stock.list_products(page_size, after_sku))

    async def get_stock(self, sku: str) -> StockLevel:
        level = await self.uow.read(lambda stock: stock.stock_level(sku))
        if level is None:
            raise UnknownSku(sku)
        return level

    async def adjust_stock(self, sku: str, delta: int, reason: str) -> StockLevel:
        def adjust(stock: StockRepository) -> tuple[StockLevel, Staged]:
            after = stock.adjust_stock(sku, delta)
            if after is None:
                level = stock.stock_level(sku)
                if level is None:
                    raise UnknownSku(sku)
                if level.available + delta > MAX_AVAILABLE:
                    raise StockWouldExceedMaximum(sku, delta, level.available)
                raise StockWouldGoNegative(sku, delta, level.available)
            events = self._stock_low(sku, after.available - delta, after.available)
            stock.stage_events(events)
            return after.level, events

        level, events = await self.uow.write(adjust, name="adjust_stock")
        self._committed(events)
        log.info("stock_adjusted", sku=sku, delta=delta, reason=reason, available=level.available)
        return level

    async def reserve(
        self, order_id: str, lines: Sequence[Line], attempt_id: str | None = None
    ) -> Reservation:
        """All lines or none; a repeat for the same order returns the held reservation.

        A reservation that was released (the orders service gives stock back when it could
        not store the order) is held again by a retry of the same order. Every call records
        `attempt_id` as the order's latest attempt (see `release`).
        """
        # Every unit of work takes products in sku order, so none waits on another's rows.
        by_sku = sorted(lines, key=lambda line: line.sku)
        moment = now()

        def reserve(stock: StockRepository) -> tuple[Reservation, Staged]:
            if stock.add_reservation(order_id, attempt_id, moment):
                return self._hold(stock, order_id, by_sku, moment)
            return self._hold_again(stock, order_id, by_sku, attempt_id, moment)

        reservation, events = await self.uow.write(reserve, name="reserve_stock")
        self._committed(events)
        if events:
            log.info("stock_reserved", order_id=order_id, lines=len(reservation.lines))
        return reservation

    async def release(self, order_id: str, attempt_id: str | None = None) -> Reservation:
        """Give the order's stock back; idempotent.

        With `attempt_id`, only if that attempt is still the order's latest: a caller undoing
        a timed-out attempt must not release what a retry has reserved since.
        """
        moment = now()

        def release(stock: StockRepository) -> tuple[Reservation, Staged]:
            found = stock.reservation(order_id)
            if found is None:
                raise UnknownReservation(order_id)
            reservation, latest_attempt = found
            if attempt_id is not None and latest_attempt not in (None, attempt_id):
                log.info("release_skipped_for_newer_attempt", order_id=order_id)
                return reservation, []
            return self._release(stock, reservation, moment)

        reservation, events = await self.uow.write(release, name="release_stock")
        self._committed(events)
        if events:
            log.info("stock_released", order_id=order_id)
        return reservation

    async def on_order_cancelled(self, event: events_pb2.OrderCancelled) -> None:
        """Releases the cancelled order's stock, once per event even if redelivered."""
        moment = now()

        def release_for_cancelled_order(stock: StockRepository) -> Staged:
            if not stock.first_delivery(event.event_id):
                log.info("event_already_processed", event_id=event.event_id)
                return []
            found = stock.reservation(event.order_id)
            if found is None:
                log.warning("cancelled_order_has_no_reservation", order_id=event.order_id)
                return []
            _, events = self._release(stock, found[0], moment)
            return events

        events = await self.uow.write(release_for_cancelled_order, name="release_cancelled_order")
        self._committed(events)
        if events:
            log.info("stock_released", order_id=event.order_id)

    def _hold(
        self, stock: StockRepository, order_id: str, lines: Sequence[Line], moment: datetime
    ) -> tuple[Reservation, Staged]:
        held, low = self._take_stock(stock, lines)
        stock.add_reserved_lines(order_id, held)
        events: Staged = [(order_id, _stock_reserved(order_id, held, moment)), *low]
        stock.stage_events(events)
        return Reservation(order_id, held, ReservationStatus.HELD), events

    def _hold_again(
        self,
        stock: StockRepository,
        order_id: str,
        lines: list[Line],
        attempt_id: str | None,
        moment: datetime,
    ) -> tuple[Reservation, Staged]:
        """The order has a reservation: return it if held, hold it again if released."""
        found = stock.reservation(order_id)
        assert found is not None, "add_reservation found it"
        existing, _ = found
        if not same_lines(existing.lines, lines):
            raise ReservationMismatch(order_id)
        if existing.status is ReservationStatus.HELD:
            if attempt_id is not None:
                stock.record_attempt(order_id, attempt_id)
            return existing, []
        # Held again at the prices of the first attempt, which the order was priced at.
        _, low = self._take_stock(stock, lines)
        stock.set_status(order_id, ReservationStatus.HELD, moment, attempt_id)
        events: Staged = [(order_id, _stock_reserved(order_id, existing.lines, moment)), *low]
        stock.stage_events(events)
        return replace(existing, status=ReservationStatus.HELD), events

    def _take_stock(
        self, stock: StockRepository, lines: Sequence[Line]
    ) -> tuple[tuple[ReservedLine, ...], Staged]:
        """Take every line, at today's prices, or raise (and so change nothing)."""
        held = []
        low: Staged = []
        for line in lines:
            after = stock.take_stock(line.sku, line.quantity)
            if after is None:
                raise _refusal(stock, line)
            held.append(ReservedLine(line.sku, line.quantity, after.price_cents))
            low += self._stock_low(line.sku, after.available + line.quantity, after.available)
        return tuple(held), low

    def _release(
        self, stock: StockRepository, reservation: Reservation, moment: datetime
    ) -> tuple[Reservation, Staged]:
        if reservation.status is ReservationStatus.RELEASED:
            return reservation, []
        for line in reservation.lines:
            stock.return_stock(line.sku, line.quantity)
        stock.set_status(reservation.order_id, ReservationStatus.RELEASED, moment)
        released = events_pb2.StockReleased(
            event_id=new_event_id(),
            occur_time=timestamp(moment),
            order_id=reservation.order_id,
            items=[_event_item(line) for line in reservation.lines],
        )
        events: Staged = [(reservation.order_id, released)]
        stock.stage_events(events)
        return replace(reservation, status=ReservationStatus.RELEASED), events

    def _stock_low(self, sku: str, before: int, after: int) -> Staged:
        """The StockLow event to stage if this change takes `sku` below the threshold."""
        if not crosses_low_threshold(before, after, self.low_stock_threshold):
            return []
        low = events_pb2.StockLow(
            event_id=new_event_id(),
            occur_time=timestamp(now()),
            sku=sku,
            available=after,
            threshold=self.low_stock_threshold,
        )
        return [(sku, low)]

    def _committed(self, events: Staged) -> None:
        """After a commit that staged events: wake the outbox relay; log stock running low."""
        if not events:
            return
        self._events_committed()
        for sku, event in events:
            if isinstance(event, events_pb2.StockLow):
                log.info("stock_low", sku=sku, available=event.available, threshold=event.threshold)


def _refusal(stock: StockRepository, line: Line) -> StockError:
    level = stock.stock_level(line.sku)
    if level is None:
        reservations_rejected.labels("unknown_sku").inc()
        return UnknownSku(line.sku)
    reservations_rejected.labels("insufficient_stock").inc()
    return InsufficientStock(line.sku, line.quantity, level.available)


def _stock_reserved(
    order_id: str, lines: Sequence[ReservedLine], moment: datetime
) -> events_pb2.StockReserved:
    return events_pb2.StockReserved(
        event_id=new_event_id(),
        occur_time=timestamp(moment),
        order_id=order_id,
        items=[_event_item(line) for line in lines],
    )


def _event_item(line: ReservedLine) -> events_pb2.EventItem:
    return events_pb2.EventItem(
        sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents
    )
