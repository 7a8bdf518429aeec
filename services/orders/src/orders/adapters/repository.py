"""Reading and writing orders with SQLAlchemy Core, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orders.adapters.tables import order_lines, orders
from orders.domain.model import Order, OrderStatus, PricedLine


async def add(
    connection: AsyncConnection, order: Order, request_id: str | None, fingerprint: str
) -> None:
    await connection.execute(
        orders.insert().values(
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=order.status.value,
            total_cents=order.total_cents,
            cancel_reason=order.cancel_reason,
            request_id=request_id or None,
            request_fingerprint=fingerprint if request_id else None,
            create_time=order.create_time,
            update_time=order.update_time,
        )
    )
    await connection.execute(
        order_lines.insert(),
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


async def get(connection: AsyncConnection, order_id: str, *, lock: bool = False) -> Order | None:
    found = await _one(connection, orders.c.order_id == order_id, lock=lock)
    return None if found is None else found[0]


async def by_request_id(connection: AsyncConnection, request_id: str) -> tuple[Order, str] | None:
    """The order a request_id created, with the fingerprint of that request."""
    return await _one(connection, orders.c.request_id == request_id)


async def _one(
    connection: AsyncConnection, condition: ColumnElement[bool], *, lock: bool = False
) -> tuple[Order, str] | None:
    """One order and its lines in a single query (the hot path of GetOrder)."""
    query = (
        select(orders, order_lines.c.sku, order_lines.c.quantity, order_lines.c.unit_price_cents)
        .join(order_lines, order_lines.c.order_id == orders.c.order_id)
        .where(condition)
        .order_by(order_lines.c.position)
    )
    if lock:
        query = query.with_for_update(of=orders)
    rows = (await connection.execute(query)).all()
    if not rows:
        return None
    lines = tuple(PricedLine(r.sku, r.quantity, r.unit_price_cents) for r in rows)
    return _order(rows[0], lines), rows[0].request_fingerprint


async def list_for_customer(
    connection: AsyncConnection, customer_id: str, limit: int, before_seq: int | None
) -> list[tuple[int, Order]]:
    """Newest first; `before_seq` continues after the last order of the previous page."""
    query = (
        select(orders)
        .where(orders.c.customer_id == customer_id)
        .order_by(orders.c.seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(orders.c.seq < before_seq)
    rows = (await connection.execute(query)).all()
    found = await _with_lines(connection, rows)
    return [(row.seq, order) for row, order in zip(rows, found, strict=True)]


async def mark_cancelled(
    connection: AsyncConnection, order_id: str, reason: str, moment: datetime
) -> None:
    await connection.execute(
        update(orders)
        .where(orders.c.order_id == order_id)
        .values(status=OrderStatus.CANCELLED.value, cancel_reason=reason, update_time=moment)
    )


async def _with_lines(connection: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Order]:
    if not rows:
        return []
    ids = [row.order_id for row in rows]
    lines: dict[str, list[PricedLine]] = {order_id: [] for order_id in ids}
    for line in await connection.execute(
        select(order_lines)
        .where(order_lines.c.order_id.in_(ids))
        .order_by(order_lines.c.order_id, order_lines.c.position)
    ):
        lines[line.order_id].append(PricedLine(line.sku, line.quantity, line.unit_price_cents))
    return [_order(row, tuple(lines[row.order_id])) for row in rows]


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
