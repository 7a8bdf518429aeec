"""Kafka delivery edge cases, produced straight onto the real topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from shop.events.v1 import events_pb2
from shop_chassis.kafka import ORDERS_TOPIC
from shop_devstack.stack import Stack
from shop_devstack.testing import Shop, eventually, new_customer

pytestmark = pytest.mark.integration


def order_confirmed(customer: str) -> events_pb2.OrderConfirmed:
    return events_pb2.OrderConfirmed(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id=customer,
        total_cents=1200,
        items=[events_pb2.EventItem(sku="MUG-001", quantity=1, unit_price_cents=1200)],
    )


TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def produce(stack: Stack, key: str, value: bytes, event_type: str, event_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            ORDERS_TOPIC,
            value,
            key=key.encode(),
            headers=[
                ("event-id", event_id.encode()),
                ("event-type", event_type.encode()),
                ("traceparent", TRACEPARENT),
            ],
        )
    finally:
        await producer.stop()


async def test_a_redelivered_event_makes_one_notification(stack: Stack, shop: Shop) -> None:
    customer = new_customer()
    event = order_confirmed(customer)
    for _ in range(3):
        await produce(
            stack, event.order_id, event.SerializeToString(), "OrderConfirmed", event.event_id
        )
    marker = order_confirmed(customer)  # produced after the copies, on the same partition
    marker.order_id = event.order_id
    await produce(
        stack, event.order_id, marker.SerializeToString(), "OrderConfirmed", marker.event_id
    )

    async def marker_stored() -> None:
        sources = [n.source_event_id for n in await shop.notifications(customer_id=customer)]
        assert marker.event_id in sources

    await eventually(marker_stored)
    sources = [n.source_event_id for n in await shop.notifications(customer_id=customer)]
    assert sorted(sources) == sorted([event.event_id, marker.event_id])


async def test_a_poison_event_goes_to_the_dead_letter_topic_and_the_next_is_handled(
    stack: Stack, shop: Shop
) -> None:
    customer = new_customer()
    poison_key = str(uuid.uuid4())
    good = order_confirmed(customer)
    good.order_id = poison_key  # same key: same partition, right behind the poison

    consumer = AIOKafkaConsumer(
        f"{ORDERS_TOPIC}.dlq",
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await produce(stack, poison_key, b"\xff\xffnot protobuf", "OrderConfirmed", "poison-1")
        await produce(stack, poison_key, good.SerializeToString(), "OrderConfirmed", good.event_id)

        async def good_stored() -> None:
            notifications = await shop.notifications(customer_id=customer)
            assert [n.source_event_id for n in notifications] == [good.event_id]

        await eventually(good_stored)

        async def dead_letter() -> dict[str, bytes]:
            while True:
                record = await asyncio.wait_for(consumer.getone(), 20)
                headers = dict(record.headers)
                if (
                    record.key == poison_key.encode()
                    and headers.get("dlq-consumer-group") == b"shop-notifier"
                ):
                    assert record.value == b"\xff\xffnot protobuf"
                    names = [name for name, _ in record.headers]
                    assert names.count("traceparent") == 1, names
                    return headers

        headers = await dead_letter()
    finally:
        await consumer.stop()
    assert headers["dlq-reason"] == b"undecodable"
    assert headers["dlq-origin-topic"] == ORDERS_TOPIC.encode()
    assert headers["dlq-origin-partition"].isdigit()
    assert headers["dlq-origin-offset"].isdigit()
    assert b"DecodeError" in headers["dlq-error"]
    # The dead letter belongs to the trace of the event that could not be processed.
    assert headers["traceparent"].split(b"-")[1] == TRACEPARENT.split(b"-")[1]
