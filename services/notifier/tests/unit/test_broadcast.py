import asyncio
from datetime import UTC, datetime

import pytest
from notifier.adapters.broadcast import BroadcastClosed, Broadcaster, SubscriberTooSlow
from notifier.domain.model import Notification, NotificationKind


def note(customer_id: str, n: int = 0) -> Notification:
    return Notification(
        notification_id=f"n-{n}",
        customer_id=customer_id,
        order_id="",
        kind=NotificationKind.ORDER_CONFIRMED,
        message="",
        source_event_id=f"e-{n}",
        create_time=datetime.now(UTC),
    )


async def test_a_subscriber_gets_only_its_customers_notifications() -> None:
    broadcaster = Broadcaster()
    async with broadcaster.subscribe("alice") as subscription:
        broadcaster.publish(note("bob", 1))
        broadcaster.publish(note("alice", 2))
        received = await asyncio.wait_for(anext(aiter(subscription)), 1)
    assert received.notification_id == "n-2"
    assert broadcaster.subscribers == 0


async def test_a_subscriber_that_falls_behind_is_cut_off_without_blocking_publish() -> None:
    broadcaster = Broadcaster(capacity=3)
    async with broadcaster.subscribe("") as subscription:
        for n in range(10):  # never waits, although nobody reads
            broadcaster.publish(note("alice", n))
        assert broadcaster.subscribers == 0
        with pytest.raises(SubscriberTooSlow):
            async for _ in subscription:
                pass


async def test_closing_ends_a_stream_that_is_waiting_for_news() -> None:
    broadcaster = Broadcaster()

    async def read_all() -> None:
        async with broadcaster.subscribe("alice") as subscription:
            async for _ in subscription:
                pass

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.01)  # the reader now waits on an empty queue
    broadcaster.close()

    with pytest.raises(BroadcastClosed):
        await asyncio.wait_for(reader, 1)
    assert broadcaster.subscribers == 0
