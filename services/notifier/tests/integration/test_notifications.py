"""Notifications against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from notifier.adapters.broadcast import Broadcaster
from notifier.bootstrap import MIGRATIONS
from notifier.domain import model
from notifier.domain.model import NotificationKind
from notifier.service_layer.notifications import Notifications
from shop.events.v1 import events_pb2
from shop_chassis.db import Database


@pytest.fixture
async def notifications(database_url: str) -> AsyncIterator[Notifications]:
    database = Database(database_url)
    await asyncio.to_thread(database.migrate, MIGRATIONS)
    yield Notifications(database, Broadcaster())
    await database.dispose()


def cancelled(customer: str, reason: str = "") -> events_pb2.OrderCancelled:
    return events_pb2.OrderCancelled(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id=customer,
        reason=reason,
    )


async def test_an_event_delivered_twice_is_stored_once(notifications: Notifications) -> None:
    event = cancelled("alice")

    first = await notifications.record(event.event_id, event, model.order_cancelled)
    again = await notifications.record(event.event_id, event, model.order_cancelled)

    assert first is not None and again is None
    (stored,) = [n for _, n in await notifications.list("alice", "", 10, None)]
    assert stored.kind is NotificationKind.ORDER_CANCELLED
    assert stored.source_event_id == event.event_id


async def test_a_long_cancellation_reason_is_stored_whole(notifications: Notifications) -> None:
    event = cancelled("bob", reason="x" * 500)  # the longest reason orders accepts
    await notifications.record(event.event_id, event, model.order_cancelled)
    ((_, stored),) = await notifications.list("bob", "", 10, None)
    assert stored.message.endswith("x" * 500)


async def test_listing_filters_and_pages_newest_first(notifications: Notifications) -> None:
    events = [cancelled("carol") for _ in range(3)]
    for event in events:
        await notifications.record(event.event_id, event, model.order_cancelled)
    other = cancelled("dave")
    await notifications.record(other.event_id, other, model.order_cancelled)

    first = await notifications.list("carol", "", 2, None)
    rest = await notifications.list("carol", "", 2, first[-1][0])
    by_order = await notifications.list("", events[0].order_id, 10, None)

    ids = [n.source_event_id for _, n in first + rest]
    assert ids == [e.event_id for e in reversed(events)]
    assert [n.order_id for _, n in by_order] == [events[0].order_id]
