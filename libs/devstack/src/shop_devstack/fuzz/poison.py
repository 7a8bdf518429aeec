"""Poison events on the topics the services consume, and proof that the consumers go on.

Each case is published to every partition of its topic. A consumer that handles the case's
event type must dead-letter it to `<topic>.dlq` with the right `dlq-reason` (see
shop_chassis.events); a type no consumer handles is skipped by all (a shared topic carries
other consumers' types, and a newer producer's). Each topic's last case is dead-lettered by
every consumer, so once its dead letters are in, everything before it on those partitions
has been dealt with. Then ordinary traffic must still be handled: an order placed and
cancelled is notified twice and its stock released (shop.orders.v1), and stock falling
below the threshold is notified (shop.inventory.v1).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from shop.events.v1 import events_pb2
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc

from shop_devstack.chaos.verdict import Check
from shop_devstack.stack import Stack

ORDERS_TOPIC = "shop.orders.v1"
INVENTORY_TOPIC = "shop.inventory.v1"
# Which consumer group handles which event types (the services' subscriptions).
CONSUMERS: dict[str, dict[str, frozenset[str]]] = {
    ORDERS_TOPIC: {
        "shop-inventory": frozenset({"OrderCancelled"}),
        "shop-notifier": frozenset({"OrderConfirmed", "OrderCancelled"}),
    },
    INVENTORY_TOPIC: {"shop-notifier": frozenset({"StockLow"})},
}
# Just under the broker's message.max.bytes (1,048,588 bytes, Kafka's default, for a whole
# record batch): the largest value a producer can put on the topic.
LARGE_VALUE = 1_040_000
GARBAGE = b"\xff\xff\xff\xff"  # a field tag whose varint never ends: never a message
SETTLE_WITHIN = 90.0


@dataclass(frozen=True)
class PoisonCase:
    name: str
    topic: str
    event_type: str | None  # the event-type header; None: no header at all
    value: bytes
    reason: str | None  # the dlq-reason of a consumer that handles event_type

    def expected(self) -> Counter[tuple[str, str]]:
        """(consumer group, reason) of each dead letter, per partition."""
        if self.reason is None:
            return Counter()
        return Counter(
            (group, self.reason)
            for group, handled in CONSUMERS[self.topic].items()
            if self.event_type is None or self.event_type in handled
        )


def cases() -> list[PoisonCase]:
    no_ids = events_pb2.OrderCancelled(reason="no event id, no order id").SerializeToString()
    return [
        PoisonCase(
            "garbage as OrderCancelled", ORDERS_TOPIC, "OrderCancelled", GARBAGE, "undecodable"
        ),
        PoisonCase(
            "garbage as OrderConfirmed", ORDERS_TOPIC, "OrderConfirmed", GARBAGE, "undecodable"
        ),
        PoisonCase("unknown event-type", ORDERS_TOPIC, "OrderExploded", GARBAGE, None),
        PoisonCase("no event-type header", ORDERS_TOPIC, None, GARBAGE, "no_event_type"),
        PoisonCase(
            f"{LARGE_VALUE:,}-byte value as OrderConfirmed",
            ORDERS_TOPIC,
            "OrderConfirmed",
            GARBAGE + b"\x00" * (LARGE_VALUE - len(GARBAGE)),
            "undecodable",
        ),
        PoisonCase(
            "OrderConfirmed without ids",
            ORDERS_TOPIC,
            "OrderConfirmed",
            events_pb2.OrderConfirmed(customer_id="fuzz").SerializeToString(),
            "rejected",
        ),
        PoisonCase(
            "OrderCancelled without ids", ORDERS_TOPIC, "OrderCancelled", no_ids, "rejected"
        ),
        PoisonCase("garbage as StockLow", INVENTORY_TOPIC, "StockLow", GARBAGE, "undecodable"),
        PoisonCase("unknown event-type", INVENTORY_TOPIC, "StockExploded", GARBAGE, None),
        PoisonCase("no event-type header", INVENTORY_TOPIC, None, GARBAGE, "no_event_type"),
        PoisonCase(
            f"{LARGE_VALUE:,}-byte value as StockLow",
            INVENTORY_TOPIC,
            "StockLow",
            GARBAGE + b"\x00" * (LARGE_VALUE - len(GARBAGE)),
            "undecodable",
        ),
        PoisonCase(
            "StockLow without ids",
            INVENTORY_TOPIC,
            "StockLow",
            events_pb2.StockLow(sku="MUG-001").SerializeToString(),
            "rejected",
        ),
    ]


@dataclass
class PoisonReport:
    cases: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


async def poison_kafka(stack: Stack, say: Callable[[str], None]) -> PoisonReport:
    run = uuid.uuid4().hex[:8]
    poison = cases()
    partitions = await _publish(stack.kafka_bootstrap, poison, run)
    letters = await _dead_letters(stack.kafka_bootstrap, poison, run, partitions)
    report = PoisonReport()
    dead_lettered = Check(
        "each poison event dead-lettered by each consumer of its type, with its reason"
    )
    for index, case in enumerate(poison):
        found = letters.get(index, {})
        shown = sorted({pair for per_partition in found.values() for pair in per_partition})
        report.cases.append(
            {"case": case.name, "topic": case.topic, "dead_letters": [list(p) for p in shown]}
        )
        for partition in range(partitions[case.topic]):
            got = found.get(partition, Counter())
            if got != case.expected():
                dead_lettered.breach(
                    f"{case.topic}[{partition}] {case.name}: expected"
                    f" {sorted(case.expected().elements())}, got {sorted(got.elements())}"
                )
    dead_lettered.detail = (
        f"{len(poison)} cases on every partition of {', '.join(sorted(partitions))}"
    )
    report.checks.append(dead_lettered)
    say("[fuzz] ordinary events after the poison …")
    report.checks.append(await _consumers_go_on(stack))
    return report


async def _publish(bootstrap: str, poison: list[PoisonCase], run: str) -> dict[str, int]:
    """Send every case to every partition; returns the partition count of each topic."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, acks="all"
    )
    await producer.start()
    try:
        partitions = {}
        for topic in CONSUMERS:
            partitions[topic] = len(await producer.partitions_for(topic))
        for index, case in enumerate(poison):
            headers = [("fuzz-case", f"{run}:{index}".encode())]
            if case.event_type is not None:
                headers.append(("event-type", case.event_type.encode()))
            for partition in range(partitions[case.topic]):
                await producer.send_and_wait(
                    case.topic, case.value, key=b"fuzz-poison", partition=partition, headers=headers
                )
        return partitions
    finally:
        await producer.stop()


async def _dead_letters(
    bootstrap: str, poison: list[PoisonCase], run: str, partitions: dict[str, int]
) -> dict[int, dict[int, Counter[tuple[str, str]]]]:
    """case index -> origin partition -> (consumer group, reason) of its dead letters, read
    until each topic's last case is in from every consumer, or SETTLE_WITHIN seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=4 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    found: dict[int, dict[int, Counter[tuple[str, str]]]] = {}
    try:
        assignment = []
        for topic in CONSUMERS:
            dlq = f"{topic}.dlq"
            count = len(consumer.partitions_for_topic(dlq) or await _partitions(consumer, dlq))
            assignment += [TopicPartition(dlq, p) for p in range(count)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning()
        sentinels = {
            topic: max(i for i, case in enumerate(poison) if case.topic == topic)
            for topic in CONSUMERS
        }

        def settled() -> bool:
            return all(
                sum(found.get(index, {}).get(p, Counter()).values())
                >= sum(poison[index].expected().values())
                for topic, index in sentinels.items()
                for p in range(partitions[topic])
            )

        loop = asyncio.get_running_loop()
        give_up = loop.time() + SETTLE_WITHIN
        while not settled() and loop.time() < give_up:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    mark = headers.get("fuzz-case", "")
                    if not mark.startswith(f"{run}:"):
                        continue
                    index = int(mark.split(":")[1])
                    partition = int(headers.get("dlq-origin-partition", "-1"))
                    pair = (headers.get("dlq-consumer-group", "?"), headers.get("dlq-reason", "?"))
                    found.setdefault(index, {}).setdefault(partition, Counter())[pair] += 1
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # the topic list of a fresh consumer
    return consumer.partitions_for_topic(topic) or set()


async def _eventually(what: str, check: Callable[[], Awaitable[bool]], within: float) -> str | None:
    """None once `check` is true; else what did not happen."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while loop.time() < give_up:
        if await check():
            return None
        await asyncio.sleep(0.5)
    return f"{what}: not within {within:g} s"


async def _consumers_go_on(stack: Stack) -> Check:
    check = Check("after the poison, ordinary events are still handled by every consumer")
    async with (
        grpc.aio.insecure_channel(stack.grpc_target("orders")) as orders_channel,
        grpc.aio.insecure_channel(stack.grpc_target("inventory")) as inventory_channel,
        grpc.aio.insecure_channel(stack.grpc_target("notifier")) as notifier_channel,
    ):
        orders = orders_pb2_grpc.OrderServiceStub(orders_channel)
        inventory = inventory_pb2_grpc.InventoryServiceStub(inventory_channel)
        notifier = notifier_pb2_grpc.NotifierServiceStub(notifier_channel)
        sku = "MUG-001"
        await inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(sku=sku, delta=10, reason="fuzz: after poison"),
            timeout=10,
        )
        customer = f"after-poison-{uuid.uuid4().hex[:8]}"
        order = await orders.CreateOrder(
            orders_pb2.CreateOrderRequest(
                customer_id=customer, items=[orders_pb2.OrderItem(sku=sku, quantity=1)]
            ),
            timeout=10,
        )
        await orders.CancelOrder(
            orders_pb2.CancelOrderRequest(order_id=order.order_id, reason="fuzz"), timeout=10
        )

        async def notified_twice() -> bool:
            listed = await notifier.ListNotifications(
                notifier_pb2.ListNotificationsRequest(customer_id=customer), timeout=10
            )
            return {n.kind for n in listed.notifications} == {
                notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED,
                notifier_pb2.NOTIFICATION_KIND_ORDER_CANCELLED,
            }

        async def stock_released() -> bool:
            # A release naming an attempt that is not the latest changes nothing: a read.
            reservation = await inventory.ReleaseStock(
                inventory_pb2.ReleaseStockRequest(
                    order_id=order.order_id, attempt_id=str(uuid.uuid4())
                ),
                timeout=10,
            )
            return reservation.status == inventory_pb2.RESERVATION_STATUS_RELEASED

        level = await inventory.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=10)
        low = await inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(
                sku=sku, delta=-(level.available - 1), reason="fuzz: below the threshold"
            ),
            timeout=10,
        )
        expected_message = f"Stock of {sku} is low: {low.available} left"

        async def stock_low_notified() -> bool:
            listed = await notifier.ListNotifications(
                notifier_pb2.ListNotificationsRequest(page_size=500), timeout=10
            )
            return any(
                n.kind == notifier_pb2.NOTIFICATION_KIND_STOCK_LOW
                and n.message.startswith(expected_message)
                for n in listed.notifications
            )

        for what, probe in (
            ("notifier: ORDER_CONFIRMED and ORDER_CANCELLED of an order", notified_twice),
            ("inventory: the cancelled order's stock released", stock_released),
            ("notifier: STOCK_LOW after stock fell below the threshold", stock_low_notified),
        ):
            missing = await _eventually(what, probe, SETTLE_WITHIN)
            if missing is not None:
                check.breach(missing)
        check.detail = "an order placed and cancelled, stock below the threshold"
    return check
