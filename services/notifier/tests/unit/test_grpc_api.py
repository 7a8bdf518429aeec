"""ListNotifications on the in-memory unit of work: validation, paging and page tokens."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
from notifier.adapters.broadcast import Broadcaster
from notifier.adapters.memory import InMemoryUnitOfWork
from notifier.domain import model
from notifier.entrypoints.grpc_api import Context, NotifierServicer
from notifier.service_layer.notifications import Notifications
from shop.events.v1 import events_pb2
from shop.notifier.v1 import notifier_pb2
from shop_chassis.errors import InvalidArgument

NO_CONTEXT = cast(Context, None)  # ListNotifications reports errors by raising


@pytest.fixture
async def servicer() -> NotifierServicer:
    broadcaster = Broadcaster()
    notifications = Notifications(InMemoryUnitOfWork(), broadcaster)
    for customer in ["alice", "alice", "alice", "bob"]:
        event = events_pb2.OrderCancelled(
            event_id=str(uuid.uuid4()), order_id=str(uuid.uuid4()), customer_id=customer
        )
        await notifications.record(event.event_id, event, model.order_cancelled)
    return NotifierServicer(notifications, broadcaster)


async def list_page(
    servicer: NotifierServicer, customer_id: str, page_token: str = ""
) -> notifier_pb2.ListNotificationsResponse:
    request = notifier_pb2.ListNotificationsRequest(
        customer_id=customer_id, page_size=2, page_token=page_token
    )
    return await servicer.ListNotifications(request, NO_CONTEXT)


async def test_a_customers_notifications_come_page_by_page_until_the_last(
    servicer: NotifierServicer,
) -> None:
    first = await list_page(servicer, "alice")
    last = await list_page(servicer, "alice", first.next_page_token)

    assert [len(first.notifications), len(last.notifications)] == [2, 1]
    assert last.next_page_token == ""
    assert {n.customer_id for n in [*first.notifications, *last.notifications]} == {"alice"}


async def test_a_page_token_of_another_customers_listing_is_an_invalid_argument(
    servicer: NotifierServicer,
) -> None:
    alices = await list_page(servicer, "alice")

    with pytest.raises(InvalidArgument) as refused:
        await list_page(servicer, "bob", alices.next_page_token)

    assert list(refused.value.violations) == ["page_token"]


async def test_an_order_id_that_is_not_a_uuid_is_an_invalid_argument(
    servicer: NotifierServicer,
) -> None:
    request = notifier_pb2.ListNotificationsRequest(order_id="not-a-uuid")

    with pytest.raises(InvalidArgument) as refused:
        await servicer.ListNotifications(request, NO_CONTEXT)

    assert list(refused.value.violations) == ["order_id"]
