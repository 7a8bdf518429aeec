"""The notifications repository in SQL (SQLAlchemy Core), and the unit of work that runs it.

Every method executes its statements on the caller's connection, inside the unit of work's
transaction; none of them awaits anything. Statements are built once, here, with bound
parameters: building a query per call costs more than SQLite takes to run it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import product
from typing import Any, TypeVar

from shop_chassis.db import Database
from shop_chassis.events import first_delivery
from sqlalchemy import Integer, Row, Select, bindparam, select
from sqlalchemy.engine import Connection

from notifier.adapters.tables import notifications, processed_events
from notifier.domain.model import Notification, NotificationKind
from notifier.service_layer.unit_of_work import NotificationRepository

T = TypeVar("T")

_INSERT_NOTIFICATION = notifications.insert()


def _newest_first(by_customer: bool, by_order: bool, after_page: bool) -> Select[Any]:
    query = (
        select(notifications)
        .order_by(notifications.c.seq.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    if by_customer:
        query = query.where(notifications.c.customer_id == bindparam("customer_id"))
    if by_order:
        query = query.where(notifications.c.order_id == bindparam("order_id"))
    if after_page:
        query = query.where(notifications.c.seq < bindparam("before_seq"))
    return query


# One statement per combination of filters, so each can use its index.
_NEWEST_FIRST = {filters: _newest_first(*filters) for filters in product((False, True), repeat=3)}


class SqlNotificationRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def first_delivery(self, event_id: str) -> bool:
        return first_delivery(self.connection, processed_events, event_id)

    def add(self, notification: Notification) -> None:
        self.connection.execute(
            _INSERT_NOTIFICATION,
            {
                "notification_id": notification.notification_id,
                "customer_id": notification.customer_id,
                "order_id": notification.order_id,
                "kind": notification.kind.value,
                "message": notification.message,
                "source_event_id": notification.source_event_id,
                "create_time": notification.create_time,
            },
        )

    def newest_first(
        self, customer_id: str, order_id: str, limit: int, before_seq: int | None
    ) -> list[tuple[int, Notification]]:
        query = _NEWEST_FIRST[bool(customer_id), bool(order_id), before_seq is not None]
        rows = self.connection.execute(
            query,
            {
                "customer_id": customer_id,
                "order_id": order_id,
                "before_seq": before_seq,
                "limit": limit,
            },
        )
        return [(row.seq, _notification(row)) for row in rows]


class SqlUnitOfWork:
    """Runs the use cases' work on the service's database, one hop per unit."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def write(self, work: Callable[[NotificationRepository], T], *, name: str) -> T:
        return await self.database.write(lambda c: work(SqlNotificationRepository(c)), name=name)

    async def read(self, work: Callable[[NotificationRepository], T]) -> T:
        return await self.database.read(lambda c: work(SqlNotificationRepository(c)))


def _notification(row: Row[Any]) -> Notification:
    return Notification(
        notification_id=row.notification_id,
        customer_id=row.customer_id,
        order_id=row.order_id,
        kind=NotificationKind(row.kind),
        message=row.message,
        source_event_id=row.source_event_id,
        create_time=_utc(row.create_time),
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
