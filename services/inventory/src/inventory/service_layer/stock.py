"""The inventory use cases. Each runs in one database transaction; the events it causes
are written to the outbox in that same transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from google.protobuf.message import Message
from prometheus_client import Counter
from shop.events.v1 import events_pb2
from shop_chassis.db import Database
from shop_chassis.events import first_delivery
from shop_chassis.kafka import INVENTORY_TOPIC
from shop_chassis.outbox import add_event, new_event_id, now, timestamp
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from inventory.adapters.tables import (
    outbox,
    processed_events,
    products,
    reservation_lines,
    reservations,
)
from inventory.domain.model import (
    InsufficientStock,
    Line,
    Product,
    Reservation,
    ReservationMismatch,
    ReservationStatus,
    ReservedLine,
    StockLevel,
    StockWouldGoNegative,
    UnknownReservation,
    UnknownSku,
    crosses_low_threshold,
    same_lines,
)

log = structlog.get_logger(__name__)

reservations_rejected = Counter(
    "shop_stock_reservations_rejected_total", "Reservations refused, by reason", ["reason"]
)


class StockService:
    def __init__(
        self, database: Database, *, low_stock_threshold: int, events_committed: Callable[[], None]
    ) -> None:
        self.database = database
        self.low_stock_threshold = low_stock_threshold
        self._events_committed = events_committed

    async def list_products(self, page_size: int, after_sku: str | None) -> list[Product]:
        query = select(products).order_by(products.c.sku).limit(page_size)
        if after_sku is not None:
            query = query.where(products.c.sku > after_sku)
        async with self.database.read() as connection:
            rows = (await connection.execute(query)).all()
        return [Product(row.sku, row.name, row.price_cents) for row in rows]

    async def get_stock(self, sku: str) -> StockLevel:
        async with self.database.read() as connection:
            row = (await connection.execute(select(products).where(products.c.sku == sku))).first()
        if row is None:
            raise UnknownSku(sku)
        return StockLevel(row.sku, row.available, row.reserved)

    async def adjust_stock(self, sku: str, delta: int, reason: str) -> StockLevel:
        async with self.database.transaction() as connection:
            row = (
                await connection.execute(
                    select(products).where(products.c.sku == sku).with_for_update()
                )
            ).first()
            if row is None:
                raise UnknownSku(sku)
            if row.available + delta < 0:
                raise StockWouldGoNegative(sku, delta, row.available)
            await connection.execute(
                update(products)
                .where(products.c.sku == sku)
                .values(available=products.c.available + delta)
            )
            after = row.available + delta
            low = await self._stage_low_stock(connection, sku, row.available, after)
        if low:
            self._events_committed()
        log.info("stock_adjusted", sku=sku, delta=delta, reason=reason, available=after)
        return StockLevel(sku, after, row.reserved)

    async def reserve(
        self, order_id: str, lines: Sequence[Line], attempt_id: str | None = None
    ) -> Reservation:
        """All lines or none; a repeat for the same order returns the held reservation.

        A reservation that was released (the orders service gives stock back when it could
        not store the order) is held again by a retry of the same order. Every call records
        `attempt_id` as the order's latest attempt (see `release`).
        """
        by_sku = sorted(lines, key=lambda line: line.sku)
        try:
            return await self._reserve(order_id, by_sku, attempt_id)
        except IntegrityError:
            # Two first attempts for one order raced to insert it (PostgreSQL lets both
            # read "absent"); the loser now finds the winner's reservation.
            return await self._reserve(order_id, by_sku, attempt_id)

    async def _reserve(
        self, order_id: str, lines: list[Line], attempt_id: str | None
    ) -> Reservation:
        async with self.database.transaction() as connection:
            existing = await _load_reservation(connection, order_id, lock=True)
            if existing is not None:
                if not same_lines(existing.lines, lines):
                    raise ReservationMismatch(order_id)
                if existing.status is ReservationStatus.HELD:
                    await _record_attempt(connection, order_id, attempt_id)
                    return existing
            skus = [line.sku for line in lines]
            rows = {
                row.sku: row
                for row in await connection.execute(
                    select(products).where(products.c.sku.in_(skus)).with_for_update()
                )
            }
            for line in lines:
                row = rows.get(line.sku)
                if row is None:
                    reservations_rejected.labels("unknown_sku").inc()
                    raise UnknownSku(line.sku)
                if row.available < line.quantity:
                    reservations_rejected.labels("insufficient_stock").inc()
                    raise InsufficientStock(line.sku, line.quantity, row.available)
            moment = now()
            if existing is None:
                held = tuple(
                    ReservedLine(line.sku, line.quantity, rows[line.sku].price_cents)
                    for line in lines
                )
                await _insert_reservation(connection, order_id, held, moment)
            else:
                held = existing.lines
                await connection.execute(
                    update(reservations)
                    .where(reservations.c.order_id == order_id)
                    .values(status=ReservationStatus.HELD.value, updated_at=moment)
                )
            await _record_attempt(connection, order_id, attempt_id)
            for line in lines:
                await connection.execute(
                    update(products)
                    .where(products.c.sku == line.sku)
                    .values(
                        available=products.c.available - line.quantity,
                        reserved=products.c.reserved + line.quantity,
                    )
                )
            await self._stage(
                connection,
                order_id,
                events_pb2.StockReserved(
                    event_id=new_event_id(),
                    occur_time=timestamp(moment),
                    order_id=order_id,
                    items=[_event_item(h) for h in held],
                ),
            )
            for line in lines:
                before = rows[line.sku].available
                await self._stage_low_stock(connection, line.sku, before, before - line.quantity)
        self._events_committed()
        log.info("stock_reserved", order_id=order_id, lines=len(held))
        return Reservation(order_id, held, ReservationStatus.HELD)

    async def release(self, order_id: str, attempt_id: str | None = None) -> Reservation:
        """Give the order's stock back; idempotent.

        With `attempt_id`, only if that attempt is still the order's latest: a caller undoing
        a timed-out attempt must not release what a retry has reserved since.
        """
        async with self.database.transaction() as connection:
            if attempt_id is not None:
                latest = await connection.scalar(
                    select(reservations.c.last_attempt_id)
                    .where(reservations.c.order_id == order_id)
                    .with_for_update()
                )
                if latest is not None and latest != attempt_id:
                    log.info("release_skipped_for_newer_attempt", order_id=order_id)
                    current = await _load_reservation(connection, order_id)
                    assert current is not None
                    return current
            reservation, changed = await self._release(connection, order_id)
        if changed:
            self._events_committed()
        return reservation

    async def on_order_cancelled(self, event: events_pb2.OrderCancelled) -> None:
        """Releases the cancelled order's stock, once per event even if redelivered."""
        changed = False
        async with self.database.transaction() as connection:
            if not await first_delivery(connection, processed_events, event.event_id):
                log.info("event_already_processed", event_id=event.event_id)
                return
            try:
                _, changed = await self._release(connection, event.order_id)
            except UnknownReservation:
                log.warning("cancelled_order_has_no_reservation", order_id=event.order_id)
        if changed:
            self._events_committed()

    async def _release(
        self, connection: AsyncConnection, order_id: str
    ) -> tuple[Reservation, bool]:
        reservation = await _load_reservation(connection, order_id, lock=True)
        if reservation is None:
            raise UnknownReservation(order_id)
        if reservation.status is ReservationStatus.RELEASED:
            return reservation, False
        for line in reservation.lines:
            await connection.execute(
                update(products)
                .where(products.c.sku == line.sku)
                .values(
                    available=products.c.available + line.quantity,
                    reserved=products.c.reserved - line.quantity,
                )
            )
        moment = now()
        await connection.execute(
            update(reservations)
            .where(reservations.c.order_id == order_id)
            .values(status=ReservationStatus.RELEASED.value, updated_at=moment)
        )
        await self._stage(
            connection,
            order_id,
            events_pb2.StockReleased(
                event_id=new_event_id(),
                occur_time=timestamp(moment),
                order_id=order_id,
                items=[_event_item(line) for line in reservation.lines],
            ),
        )
        log.info("stock_released", order_id=order_id)
        return Reservation(order_id, reservation.lines, ReservationStatus.RELEASED), True

    async def _stage_low_stock(
        self, connection: AsyncConnection, sku: str, before: int, after: int
    ) -> bool:
        if not crosses_low_threshold(before, after, self.low_stock_threshold):
            return False
        await self._stage(
            connection,
            sku,
            events_pb2.StockLow(
                event_id=new_event_id(),
                occur_time=timestamp(now()),
                sku=sku,
                available=after,
                threshold=self.low_stock_threshold,
            ),
        )
        log.info("stock_low", sku=sku, available=after, threshold=self.low_stock_threshold)
        return True

    @staticmethod
    async def _stage(connection: AsyncConnection, key: str, event: Message) -> None:
        await add_event(connection, outbox, topic=INVENTORY_TOPIC, key=key, event=event)


def _event_item(line: ReservedLine) -> events_pb2.EventItem:
    return events_pb2.EventItem(
        sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents
    )


async def _record_attempt(
    connection: AsyncConnection, order_id: str, attempt_id: str | None
) -> None:
    if attempt_id is not None:
        await connection.execute(
            update(reservations)
            .where(reservations.c.order_id == order_id)
            .values(last_attempt_id=attempt_id)
        )


async def _insert_reservation(
    connection: AsyncConnection, order_id: str, held: tuple[ReservedLine, ...], moment: datetime
) -> None:
    await connection.execute(
        reservations.insert().values(
            order_id=order_id,
            status=ReservationStatus.HELD.value,
            created_at=moment,
            updated_at=moment,
        )
    )
    await connection.execute(
        reservation_lines.insert(),
        [
            {
                "order_id": order_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
            }
            for line in held
        ],
    )


async def _load_reservation(
    connection: AsyncConnection, order_id: str, *, lock: bool = False
) -> Reservation | None:
    query = select(reservations).where(reservations.c.order_id == order_id)
    if lock:
        query = query.with_for_update()
    header = (await connection.execute(query)).first()
    if header is None:
        return None
    lines = await connection.execute(
        select(reservation_lines)
        .where(reservation_lines.c.order_id == order_id)
        .order_by(reservation_lines.c.sku)
    )
    return Reservation(
        order_id,
        tuple(ReservedLine(r.sku, r.quantity, r.unit_price_cents) for r in lines),
        ReservationStatus(header.status),
    )
