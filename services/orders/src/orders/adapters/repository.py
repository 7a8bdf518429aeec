"""The orders repository in SQL (SQLAlchemy Core), and the unit of work that runs it.

Every method executes its statements on the caller's connection, inside the unit of work's
transaction; none of them awaits anything. Statements are built once, here, with bound
parameters: building a query per call costs more than SQLite takes to run it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from shop_chassis.db import Database
from shop_chassis.kafka import ORDERS_TOPIC
from shop_chassis.outbox import add_event
from sqlalchemy import ColumnElement, Row, Select, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from orders.adapters.tables import order_lines, orders, outbox
from orders.domain.model import DuplicateOrder, Order, OrderStatus, PricedLine
from orders.service_layer.unit_of_work import OrderRepository

T = TypeVar("T")


def _order_with_lines(condition: ColumnElement[bool]) -> Select[Any]:
    """One order and its lines in a single query (the hot path of GetOrder)."""
    return (
        select(orders, order_lines.c.sku, order_lines.c.quantity, order_lines.c.unit_price_cents)
        .join(order_lines, order_lines.c.order_id == orders.c.order_id)
        .where(condition)
        .order_by(order_lines.c.position)
    )


_INSERT_ORDER = orders.insert()
_INSERT_LINES = order_lines.insert()
_BY_ORDER_ID = _order_with_lines(orders.c.order_id == bindparam("key"))
_BY_ORDER_ID_LOCKED = _BY_ORDER_ID.with_for_update(of=orders)
_BY_REQUEST_ID = _order_with_lines(orders.c.request_id == bindparam("key"))
_MARK_CANCELLED = (
    update(orders)
    .where(orders.c.order_id == bindparam("key"))
    .values(
        status=OrderStatus.CANCELLED.value,
        cancel_reason=bindparam("reason"),
        update_time=bindparam("moment"),
    )
)


class SqlOrderRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, order: Order, request_id: str | None, fingerprint: str) -> None:
        try:
            self.connection.execute(
                _INSERT_ORDER,
                {
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "status": order.status.value,
                    "total_cents": order.total_cents,
                    "cancel_reason": order.cancel_reason,
                    "request_id": request_id or None,
                    "request_fingerprint": fingerprint if request_id else None,
                    "create_time": order.create_time,
                    "update_time": order.update_time,
                },
            )
        except IntegrityError as error:
            raise DuplicateOrder(order.order_id) from error
        self.connection.execute(
            _INSERT_LINES,
            [
                {
                    "order_id": order.order_id,
                    "position": position,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price_cents": line.unit_price_cents,
                }
                for position, line in enumerate(order.lines)
            ],
        )

    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        found = self._one(_BY_ORDER_ID_LOCKED if lock else _BY_ORDER_ID, order_id)
        return None if found is None else found[0]

    def by_request_id(self, request_id: str) -> tuple[Order, str] | None:
        return self._one(_BY_REQUEST_ID, request_id)

    def list_for_customer(
        self, customer_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Order]]:
        query = (
            select(orders)
            .where(orders.c.customer_id == customer_id)
            .order_by(orders.c.seq.desc())
            .limit(limit)
        )
        if before_seq is not None:
            query = query.where(orders.c.seq < before_seq)
        rows = self.connection.execute(query).all()
        found = self._with_lines(rows)
        return [(row.seq, order) for row, order in zip(rows, found, strict=True)]

    def mark_cancelled(self, order_id: str, reason: str, moment: datetime) -> None:
        self.connection.execute(
            _MARK_CANCELLED, {"key": order_id, "reason": reason, "moment": moment}
        )

    def stage_event(self, key: str, event: Message) -> None:
        add_event(self.connection, outbox, topic=ORDERS_TOPIC, key=key, event=event)

    def _one(self, query: Select[Any], key: str) -> tuple[Order, str] | None:
        rows = self.connection.execute(query, {"key": key}).all()
        if not rows:
            return None
        lines = tuple(PricedLine(r.sku, r.quantity, r.unit_price_cents) for r in rows)
        return _order(rows[0], lines), rows[0].request_fingerprint

    def _with_lines(self, rows: Sequence[Row[Any]]) -> list[Order]:
        if not rows:
            return []
        ids = [row.order_id for row in rows]
        lines: dict[str, list[PricedLine]] = {order_id: [] for order_id in ids}
        for line in self.connection.execute(
            select(order_lines)
            .where(order_lines.c.order_id.in_(ids))
            .order_by(order_lines.c.order_id, order_lines.c.position)
        ):
            lines[line.order_id].append(PricedLine(line.sku, line.quantity, line.unit_price_cents))
        return [_order(row, tuple(lines[row.order_id])) for row in rows]


class SqlUnitOfWork:
    """Runs the use cases' work on the service's database, one hop per unit."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def write(self, work: Callable[[OrderRepository], T], *, name: str) -> T:
        return await self.database.write(lambda c: work(SqlOrderRepository(c)), name=name)

    async def read(self, work: Callable[[OrderRepository], T]) -> T:
        return await self.database.read(lambda c: work(SqlOrderRepository(c)))


def _order(row: Row[Any], lines: tuple[PricedLine, ...]) -> Order:
    return Order(
        order_id=row.order_id,
        customer_id=row.customer_id,
        lines=lines,
        status=OrderStatus(row.status),
        create_time=_utc(row.create_time),
        update_time=_utc(row.update_time),
        cancel_reason=row.cancel_reason,
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
