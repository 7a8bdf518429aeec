"""The SQL unit of work against real SQLite and PostgreSQL: the same behaviour as the
in-memory one, all or nothing, and each use case within its statement budget."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from notifier.adapters.broadcast import Broadcaster
from notifier.adapters.repository import SqlUnitOfWork
from notifier.bootstrap import MIGRATIONS
from notifier.domain import model
from notifier.domain.model import Notification, NotificationKind
from notifier.service_layer.notifications import Notifications
from shop.events.v1 import events_pb2
from shop_chassis.db import Database, open_database
from shop_chassis.migrate import upgrade
from sqlalchemy.exc import IntegrityError


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    # In this process (as `python -m shop_chassis.migrate` does for a service): fast tests.
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)
    yield database
    await database.dispose()


@pytest.fixture
def notifications(database: Database) -> Notifications:
    return Notifications(SqlUnitOfWork(database), Broadcaster())


def cancelled(customer: str, reason: str = "") -> events_pb2.OrderCancelled:
    return events_pb2.OrderCancelled(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id=customer,
        reason=reason,
    )


async def record(notifications: Notifications, event: events_pb2.OrderCancelled) -> None:
    await notifications.record(event.event_id, event, model.order_cancelled)


async def test_an_event_delivered_twice_is_stored_once(notifications: Notifications) -> None:
    event = cancelled("alice")

    first = await notifications.record(event.event_id, event, model.order_cancelled)
    again = await notifications.record(event.event_id, event, model.order_cancelled)

    assert first is not None and again is None
    (stored,) = [n for _, n in await notifications.list_notifications("alice", "", 10, None)]
    assert stored == first


async def test_an_event_delivered_twice_at_once_is_stored_once(
    notifications: Notifications,
) -> None:
    event = cancelled("alice")

    results = await asyncio.gather(
        *(notifications.record(event.event_id, event, model.order_cancelled) for _ in range(2))
    )

    assert sorted(r is None for r in results) == [False, True]
    assert len(await notifications.list_notifications("alice", "", 10, None)) == 1


async def test_a_notification_that_fails_to_store_leaves_no_dedupe_record(
    notifications: Notifications,
) -> None:
    earlier = cancelled("alice")
    await record(notifications, earlier)
    event = cancelled("alice")

    def clashing(event: events_pb2.OrderCancelled, moment: datetime) -> Notification:
        made = model.order_cancelled(event, moment)
        return dataclasses.replace(made, source_event_id=earlier.event_id)

    with pytest.raises(IntegrityError):
        await notifications.record(event.event_id, event, clashing)
    redelivered = await notifications.record(event.event_id, event, model.order_cancelled)

    assert redelivered is not None


async def test_a_long_cancellation_reason_is_stored_whole(notifications: Notifications) -> None:
    event = cancelled("bob", reason="x" * 500)  # the longest reason orders accepts
    await record(notifications, event)

    ((_, stored),) = await notifications.list_notifications("bob", "", 10, None)

    assert stored.kind is NotificationKind.ORDER_CANCELLED
    assert stored.message.endswith("x" * 500)
    assert stored.create_time.tzinfo is not None


async def test_listing_filters_and_pages_newest_first(notifications: Notifications) -> None:
    events = [cancelled("carol") for _ in range(3)]
    for event in [*events, cancelled("dave")]:
        await record(notifications, event)

    first = await notifications.list_notifications("carol", "", 2, None)
    rest = await notifications.list_notifications("carol", "", 2, first[-1][0])
    by_order = await notifications.list_notifications("", events[0].order_id, 10, None)
    everything = await notifications.list_notifications("", "", 10, None)

    ids = [n.source_event_id for _, n in first + rest]
    assert ids == [e.event_id for e in reversed(events)]
    assert [n.order_id for _, n in by_order] == [events[0].order_id]
    assert [n.customer_id for _, n in everything] == ["dave", "carol", "carol", "carol"]


async def test_storing_a_notification_is_one_write_of_two_statements(
    notifications: Notifications, database: Database
) -> None:
    event = cancelled("alice")

    with database.counting_statements() as first:
        await record(notifications, event)
    with database.counting_statements() as redelivered:
        await record(notifications, event)

    assert first.count == 2  # the dedupe record, the notification
    assert redelivered.count == 1  # the dedupe record, refused by its primary key
    assert first.uncached + redelivered.uncached == []  # each compiled once, then cached


@pytest.mark.parametrize(
    ("customer_id", "order_id", "after_first_page"),
    [("", "", False), ("alice", "", False), ("", "order", False), ("alice", "order", True)],
)
async def test_listing_notifications_is_one_statement(
    notifications: Notifications,
    database: Database,
    customer_id: str,
    order_id: str,
    after_first_page: bool,
) -> None:
    event = cancelled("alice")
    await record(notifications, event)
    order_id = event.order_id if order_id else ""

    with database.counting_statements() as counted:
        found = await notifications.list_notifications(
            customer_id, order_id, 10, 1_000_000 if after_first_page else None
        )

    assert counted.count == 1
    assert [n.source_event_id for _, n in found] == [event.event_id]
