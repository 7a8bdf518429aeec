"""The notifier use cases on the in-memory unit of work: no database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from notifier.adapters.broadcast import Broadcaster
from notifier.adapters.memory import InMemoryUnitOfWork
from notifier.domain import model
from notifier.domain.model import Notification, NotificationKind
from notifier.service_layer.notifications import Notifications
from notifier.service_layer.unit_of_work import NotificationRepository
from prometheus_client import REGISTRY
from shop.events.v1 import events_pb2
from shop_chassis.outbox import now
from structlog.testing import capture_logs

T = TypeVar("T")


class RecordingBroadcaster(Broadcaster):
    """Notes each notification it publishes with the units of work committed by then."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        super().__init__()
        self.uow = uow
        self.published: list[tuple[Notification, list[str]]] = []

    def publish(self, notification: Notification) -> None:
        self.published.append((notification, list(self.uow.units)))
        super().publish(notification)


class FailingWrites(InMemoryUnitOfWork):
    async def write(self, work: Callable[[NotificationRepository], T], *, name: str) -> T:
        raise RuntimeError("disk full")


@pytest.fixture
def uow() -> InMemoryUnitOfWork:
    return InMemoryUnitOfWork()


@pytest.fixture
def broadcaster(uow: InMemoryUnitOfWork) -> RecordingBroadcaster:
    return RecordingBroadcaster(uow)


@pytest.fixture
def notifications(uow: InMemoryUnitOfWork, broadcaster: RecordingBroadcaster) -> Notifications:
    return Notifications(uow, broadcaster)


def cancelled(customer: str) -> events_pb2.OrderCancelled:
    return events_pb2.OrderCancelled(
        event_id=str(uuid.uuid4()), order_id=str(uuid.uuid4()), customer_id=customer
    )


async def record(notifications: Notifications, event: events_pb2.OrderCancelled) -> None:
    await notifications.record(event.event_id, event, model.order_cancelled)


def observed(kind: NotificationKind) -> tuple[float, float]:
    """(count, sum) of the event-to-notification histogram for `kind`."""
    labels = {"kind": kind.value}
    return (
        REGISTRY.get_sample_value("shop_event_to_notification_seconds_count", labels) or 0.0,
        REGISTRY.get_sample_value("shop_event_to_notification_seconds_sum", labels) or 0.0,
    )


async def test_an_event_makes_one_notification_in_one_unit_of_work(
    notifications: Notifications, uow: InMemoryUnitOfWork
) -> None:
    event = cancelled("alice")

    stored = await notifications.record(event.event_id, event, model.order_cancelled)

    assert stored is not None
    assert stored.kind is NotificationKind.ORDER_CANCELLED
    assert stored.source_event_id == event.event_id
    assert await notifications.list_notifications("alice", "", 10, None) == [(1, stored)]
    assert uow.units == ["store_notification"]


async def test_a_redelivered_event_makes_no_second_notification(
    notifications: Notifications, broadcaster: RecordingBroadcaster
) -> None:
    event = cancelled("alice")

    with capture_logs() as logs:
        first = await notifications.record(event.event_id, event, model.order_cancelled)
        again = await notifications.record(event.event_id, event, model.order_cancelled)

    assert first is not None and again is None
    assert [n for _, n in await notifications.list_notifications("", "", 10, None)] == [first]
    assert [n for n, _ in broadcaster.published] == [first]
    assert [line["event"] for line in logs] == ["notification_stored", "event_already_processed"]


async def test_a_notification_is_broadcast_only_after_its_unit_of_work_committed(
    notifications: Notifications, broadcaster: RecordingBroadcaster
) -> None:
    event = cancelled("alice")

    stored = await notifications.record(event.event_id, event, model.order_cancelled)

    assert broadcaster.published == [(stored, ["store_notification"])]


async def test_a_notification_that_could_not_be_stored_is_not_broadcast() -> None:
    uow = FailingWrites()
    broadcaster = RecordingBroadcaster(uow)
    event = cancelled("alice")

    with pytest.raises(RuntimeError, match="disk full"):
        await Notifications(uow, broadcaster).record(event.event_id, event, model.order_cancelled)

    assert broadcaster.published == []


async def test_the_time_from_event_to_notification_is_measured_once_per_event(
    notifications: Notifications,
) -> None:
    event = cancelled("alice")
    count_before, sum_before = observed(NotificationKind.ORDER_CANCELLED)

    for _ in range(2):  # the redelivery is not measured again
        await notifications.record(
            event.event_id, event, model.order_cancelled, now() - timedelta(seconds=2)
        )

    count_after, sum_after = observed(NotificationKind.ORDER_CANCELLED)
    assert count_after - count_before == 1
    assert sum_after - sum_before >= 2


async def test_notifications_are_listed_newest_first_filtered_and_page_by_page(
    notifications: Notifications,
) -> None:
    carols = [cancelled("carol") for _ in range(3)]
    for event in [*carols, cancelled("dave")]:
        await record(notifications, event)

    first_page = await notifications.list_notifications("carol", "", 2, None)
    second_page = await notifications.list_notifications("carol", "", 2, first_page[-1][0])
    by_order = await notifications.list_notifications("", carols[0].order_id, 10, None)
    everything = await notifications.list_notifications("", "", 10, None)

    newest_first = [n.source_event_id for _, n in first_page + second_page]
    assert newest_first == [e.event_id for e in reversed(carols)]
    assert [n.order_id for _, n in by_order] == [carols[0].order_id]
    assert [n.customer_id for _, n in everything] == ["dave", "carol", "carol", "carol"]
