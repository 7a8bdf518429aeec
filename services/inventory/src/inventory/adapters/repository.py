"""The inventory repository in SQL (SQLAlchemy Core), and the unit of work that runs it.

Every method executes its statements on the caller's connection, inside the unit of work's
transaction; none of them awaits anything. Statements are built once, here, with bound
parameters: building a query per call costs more than SQLite takes to run it.

Stock changes are conditional updates (`UPDATE … WHERE available + change >= 0 RETURNING`):
the check and the write are one statement, which PostgreSQL re-evaluates on the newest row
version once a concurrent writer commits, and which SQLite's `BEGIN IMMEDIATE` serializes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message
from shop_chassis.db import Database, insert_ignoring_conflicts
from shop_chassis.events import first_delivery
from shop_chassis.kafka import INVENTORY_TOPIC
from shop_chassis.outbox import add_events
from sqlalchemy import Integer, String, bindparam, func, select, update
from sqlalchemy.engine import Connection

from inventory.adapters.tables import (
    outbox,
    processed_events,
    products,
    reservation_lines,
    reservations,
)
from inventory.domain.model import (
    MAX_AVAILABLE,
    Product,
    ProductStock,
    Reservation,
    ReservationStatus,
    ReservedLine,
    StockLevel,
)
from inventory.service_layer.unit_of_work import StockRepository

T = TypeVar("T")

_available_change = bindparam("available_change", type_=Integer)
_reserved_change = bindparam("reserved_change", type_=Integer)

# The first page starts after "", before every sku.
_LIST_PRODUCTS = (
    select(products.c.sku, products.c.name, products.c.price_cents)
    .where(products.c.sku > bindparam("after_sku"))
    .order_by(products.c.sku)
    .limit(bindparam("limit"))
)
_STOCK_LEVEL = select(products.c.sku, products.c.available, products.c.reserved).where(
    products.c.sku == bindparam("key")
)
_CHANGE_STOCK = (
    update(products)
    .where(products.c.sku == bindparam("key"))
    .where(products.c.available + _available_change >= 0)
    .where(products.c.available + _available_change <= MAX_AVAILABLE)
    .values(
        available=products.c.available + _available_change,
        reserved=products.c.reserved + _reserved_change,
    )
    .returning(products.c.sku, products.c.price_cents, products.c.available, products.c.reserved)
)
# The header and its lines in one query, ordered by sku (the order stock is taken in).
_RESERVATION = (
    select(
        reservations.c.status,
        reservations.c.last_attempt_id,
        reservation_lines.c.sku,
        reservation_lines.c.quantity,
        reservation_lines.c.unit_price_cents,
    )
    .join(reservation_lines, reservation_lines.c.order_id == reservations.c.order_id)
    .where(reservations.c.order_id == bindparam("key"))
    .order_by(reservation_lines.c.sku)
    .with_for_update(of=reservations)
)
# An order that has a reservation inserts nothing, and no error aborts the transaction (as
# one would on PostgreSQL); a concurrent first attempt waits for the other to commit.
# Both databases spell it INSERT ... ON CONFLICT DO NOTHING (insert_ignoring_conflicts).
_INSERT_LINES = reservation_lines.insert()
_SET_STATUS = (
    update(reservations)
    .where(reservations.c.order_id == bindparam("key"))
    .values(
        status=bindparam("new_status"),
        updated_at=bindparam("moment"),
        last_attempt_id=func.coalesce(
            bindparam("attempt_id", type_=String), reservations.c.last_attempt_id
        ),
    )
)
_RECORD_ATTEMPT = (
    update(reservations)
    .where(reservations.c.order_id == bindparam("key"))
    .values(last_attempt_id=bindparam("attempt_id"))
)


class SqlStockRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def list_products(self, limit: int, after_sku: str | None) -> list[Product]:
        rows = self.connection.execute(
            _LIST_PRODUCTS, {"after_sku": after_sku or "", "limit": limit}
        )
        return [Product(row.sku, row.name, row.price_cents) for row in rows]

    def stock_level(self, sku: str) -> StockLevel | None:
        row = self.connection.execute(_STOCK_LEVEL, {"key": sku}).first()
        return None if row is None else StockLevel(row.sku, row.available, row.reserved)

    def take_stock(self, sku: str, quantity: int) -> ProductStock | None:
        return self._change_stock(sku, -quantity, quantity)

    def return_stock(self, sku: str, quantity: int) -> None:
        self._change_stock(sku, quantity, -quantity)

    def adjust_stock(self, sku: str, delta: int) -> ProductStock | None:
        return self._change_stock(sku, delta, 0)

    def reservation(self, order_id: str) -> tuple[Reservation, str | None] | None:
        rows = self.connection.execute(_RESERVATION, {"key": order_id}).all()
        if not rows:
            return None
        lines = tuple(ReservedLine(r.sku, r.quantity, r.unit_price_cents) for r in rows)
        status = ReservationStatus(rows[0].status)
        return Reservation(order_id, lines, status), rows[0].last_attempt_id

    def add_reservation(self, order_id: str, attempt_id: str | None, moment: datetime) -> bool:
        inserted = self.connection.execute(
            insert_ignoring_conflicts(reservations),
            {
                "order_id": order_id,
                "status": ReservationStatus.HELD.value,
                "last_attempt_id": attempt_id,
                "created_at": moment,
                "updated_at": moment,
            },
        )
        return inserted.rowcount == 1

    def add_reserved_lines(self, order_id: str, lines: Sequence[ReservedLine]) -> None:
        self.connection.execute(
            _INSERT_LINES,
            [
                {
                    "order_id": order_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price_cents": line.unit_price_cents,
                }
                for line in lines
            ],
        )

    def set_status(
        self,
        order_id: str,
        status: ReservationStatus,
        moment: datetime,
        attempt_id: str | None = None,
    ) -> None:
        self.connection.execute(
            _SET_STATUS,
            {
                "key": order_id,
                "new_status": status.value,
                "moment": moment,
                "attempt_id": attempt_id,
            },
        )

    def record_attempt(self, order_id: str, attempt_id: str) -> None:
        self.connection.execute(_RECORD_ATTEMPT, {"key": order_id, "attempt_id": attempt_id})

    def first_delivery(self, event_id: str) -> bool:
        return first_delivery(self.connection, processed_events, event_id)

    def stage_events(self, events: Sequence[tuple[str, Message]]) -> None:
        add_events(
            self.connection, outbox, [(INVENTORY_TOPIC, key, event) for key, event in events]
        )

    def _change_stock(self, sku: str, available: int, reserved: int) -> ProductStock | None:
        row = self.connection.execute(
            _CHANGE_STOCK,
            {"key": sku, "available_change": available, "reserved_change": reserved},
        ).first()
        if row is None:
            return None
        return ProductStock(row.sku, row.price_cents, row.available, row.reserved)


class SqlUnitOfWork:
    """Runs the use cases' work on the service's database, one hop per unit."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def write(self, work: Callable[[StockRepository], T], *, name: str) -> T:
        return await self.database.write(lambda c: work(SqlStockRepository(c)), name=name)

    async def read(self, work: Callable[[StockRepository], T]) -> T:
        return await self.database.read(lambda c: work(SqlStockRepository(c)))
