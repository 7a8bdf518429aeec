"""The verdict of a chaos run: what clients were told against what the system holds.

Read only through the services' public APIs and Kafka's own offsets, as an auditor would.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc

from shop_devstack.chaos.faults import FaultRecord
from shop_devstack.chaos.load import Ledger
from shop_devstack.procs import Process
from shop_devstack.stack import Stack

# Who consumes what (README, "Kafka topics and events"). Named here rather than read from the
# group's committed offsets: right after a broker restart those can come back empty, which
# would read as "no lag".
CONSUMED = {
    "inventory": ("shop.orders.v1",),
    "notifier": ("shop.orders.v1", "shop.inventory.v1"),
}
OUTBOXES = ("orders", "inventory")  # the services that publish through an outbox


def consumer_group(service: str) -> str:
    """As the service reads it (the chaos stack's services inherit this environment)."""
    return os.environ.get(f"{service.upper()}_KAFKA_CONSUMER_GROUP", f"shop-{service}")


CONFIRMED = orders_pb2.ORDER_STATUS_CONFIRMED
CANCELLED = orders_pb2.ORDER_STATUS_CANCELLED
KIND_CONFIRMED = notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED
KIND_CANCELLED = notifier_pb2.NOTIFICATION_KIND_ORDER_CANCELLED
SHOWN = 5  # breaches listed per check; all are counted


@dataclass
class Check:
    name: str
    ok: bool = True
    detail: str = ""
    breaches: list[str] = field(default_factory=list)

    def breach(self, what: str) -> None:
        self.ok = False
        self.breaches.append(what)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "breaches": len(self.breaches),
            "examples": self.breaches[:SHOWN],
        }


@dataclass
class Backlog:
    consumer_lag: dict[str, int]  # "group topic[partition]" -> messages not committed
    outbox: dict[str, float]  # replica -> unsent rows, and parked ones (Kafka refused them)
    dead_letters: dict[str, int]  # dlq topic -> records

    @property
    def settled(self) -> bool:
        return (
            not any(self.consumer_lag.values())
            and not any(self.outbox.values())
            and not any(self.dead_letters.values())
        )


async def backlog(stack: Stack) -> Backlog:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    await admin.start()
    try:
        topics = {t for t in await consumer.topics() if t.startswith("shop.")}
        partitions = {
            t: [TopicPartition(t, p) for p in consumer.partitions_for_topic(t) or ()]
            for t in topics
        }
        every = [tp for tps in partitions.values() for tp in tps]
        ends = await consumer.end_offsets(every)
        starts = await consumer.beginning_offsets(every)
        lag: dict[str, int] = {}
        for service, consumed in CONSUMED.items():
            group = consumer_group(service)
            committed = await admin.list_consumer_group_offsets(group)
            for topic in consumed:
                if topic not in partitions:
                    raise LookupError(f"topic {topic} does not exist (yet)")
                for tp in partitions[topic]:
                    done = committed[tp].offset if tp in committed else starts[tp]
                    lag[f"{group} {topic}[{tp.partition}]"] = max(ends[tp] - max(done, 0), 0)
        dead = {
            t: sum(ends[tp] - starts[tp] for tp in partitions[t])
            for t in sorted(topics)
            if t.endswith(".dlq")
        }
    finally:
        await admin.close()
        await consumer.stop()
    outbox = {}
    for name in OUTBOXES:
        for replica in stack.replicas:
            metrics_port = stack.ports.replica(name, replica)[1]
            instance = stack.topology.instance_name(name, replica)
            for gauge, what in (
                ("shop_outbox_backlog", ""),
                ("shop_outbox_parked_rows", " parked"),
            ):
                value = await asyncio.to_thread(_gauge, metrics_port, gauge)
                if value is None:  # a missing reading is not a zero
                    raise LookupError(f"{instance} does not report {gauge}")
                outbox[instance + what] = value
    return Backlog(lag, outbox, dead)


def _gauge(port: int, metric: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    return None


SECOND_LOOK = 2.0  # the gauges refresh every second: one look can read an old zero


async def settle(stack: Stack, within: float) -> Check:
    """Wait until nothing is left in flight: consumer lag 0, outbox 0, DLQ empty, seen twice
    at least SECOND_LOOK seconds apart (a first look at the deadline still gets its second)."""
    check = Check("settled: consumer lag, outbox and DLQ all empty")
    deadline = time.monotonic() + within
    last: Backlog | None = None
    settled_since: float | None = None
    while True:
        try:
            last = await backlog(stack)
        except Exception as exc:  # a replica still restarting, a topic not there yet: again
            check.detail = f"not measurable yet: {exc!r}"
            last, settled_since = None, None
        else:
            if not last.settled:
                settled_since = None
            elif settled_since is None:
                settled_since = time.monotonic()
            elif time.monotonic() - settled_since >= SECOND_LOOK:
                check.detail = "lag 0, outbox 0, DLQ empty, twice 2 s apart"
                return check
        if time.monotonic() >= deadline and settled_since is None:
            break
        await asyncio.sleep(1.0)
    if last is None:
        check.breach(check.detail)
        return check
    for where, lag in last.consumer_lag.items():
        if lag:
            check.breach(f"consumer lag {lag} on {where}")
    for replica, rows in last.outbox.items():
        if rows:
            check.breach(f"{replica}: {rows:.0f} outbox rows unsent")
    for topic, records in last.dead_letters.items():
        if records:
            check.breach(f"{records} dead letters in {topic}")
    return check


async def judge(
    stack: Stack,
    ledger: Ledger,
    initial: dict[str, inventory_pb2.StockLevel],
    within: float,
) -> tuple[list[Check], float | None]:
    """Every check, passed within `within` seconds or failed at its end.

    Events still travelling are not losses: the checks are repeated until all pass or time is
    up. A lost notification never turns up, and a duplicate never goes away.
    """
    started = time.monotonic()
    deadline = started + within
    while True:
        settled = await settle(stack, max(deadline - time.monotonic(), 0.0))
        try:
            checks = [*await audit(stack, ledger, initial), settled]
        except grpc.aio.AioRpcError as error:  # a service still coming back: ask again
            unanswered = Check("the services answer the audit")
            unanswered.breach(f"{error.code().name}: {error.details()}")
            checks = [settled, unanswered]
        if all(check.ok for check in checks):
            return checks, time.monotonic() - started
        if time.monotonic() >= deadline:
            return checks, None
        await asyncio.sleep(1.0)


# Answers that mean "the server failed on this" rather than "try again" or "no": a fault
# must surface as UNAVAILABLE (or a deadline), which a client knows how to handle.
SERVER_FAILURES = ("UNKNOWN", "INTERNAL", "DATA_LOSS")


def load_went_through(ledger: Ledger) -> Check:
    """The run placed orders, and none was given up on (its outcome unknown to the client)."""
    check = Check("the load went through: orders acknowledged, none abandoned")
    if not ledger.acked:
        check.breach("no CreateOrder was answered OK: nothing was tested")
    if ledger.abandoned:
        check.breach(f"{ledger.abandoned} requests abandoned after retrying for their time")
    check.detail = f"{len(ledger.acked)} orders acknowledged, {ledger.abandoned} abandoned"
    return check


def came_back(records: Sequence[FaultRecord], processes: Sequence[Process]) -> Check:
    """Every fault was recovered from, and every process runs at the end."""
    check = Check("the system came back from every fault, every process runs")
    for record in records:
        if record.recovered_at is None:
            check.breach(f"never recovered from: {record.name}")
    for process in processes:
        if process.exited or process.held:
            check.breach(f"{process.name} is not running")
    slowest = max((r.recovery_seconds or 0.0 for r in records), default=0.0)
    check.detail = f"{len(records)} faults, slowest recovery {slowest:.1f} s"
    return check


def clear_answers(ledger: Ledger) -> Check:
    check = Check("every error answer was one a client can act on (no UNKNOWN or INTERNAL)")
    for answer, count in sorted(ledger.answers.items()):
        if answer.split(" ")[-1] in SERVER_FAILURES:
            check.breach(f"{count} x {answer}")
    check.detail = f"{sum(ledger.answers.values())} answers, {ledger.errors()} of them errors"
    return check


async def audit(
    stack: Stack, ledger: Ledger, initial: dict[str, inventory_pb2.StockLevel]
) -> list[Check]:
    async with (
        stack.channel("orders") as orders_channel,
        stack.channel("inventory") as inventory_channel,
        stack.channel("notifier") as notifier_channel,
    ):
        orders = orders_pb2_grpc.OrderServiceStub(orders_channel)
        inventory = inventory_pb2_grpc.InventoryServiceStub(inventory_channel)
        notifier = notifier_pb2_grpc.NotifierServiceStub(notifier_channel)
        held = await _all_orders(orders, sorted(ledger.customers))
        return [
            load_went_through(ledger),
            clear_answers(ledger),
            _orders_kept(ledger, held),
            await _notified_once(notifier, sorted(ledger.customers), held),
            await _stock_adds_up(inventory, initial, held),
        ]


async def _all_orders(
    orders: orders_pb2_grpc.OrderServiceAsyncStub, customers: list[str]
) -> dict[str, orders_pb2.Order]:
    found: dict[str, orders_pb2.Order] = {}
    for customer in customers:
        token = ""
        while True:
            reply = await orders.ListOrders(
                orders_pb2.ListOrdersRequest(customer_id=customer, page_size=500, page_token=token),
                timeout=10,
            )
            found.update({order.order_id: order for order in reply.orders})
            if not (token := reply.next_page_token):
                break
    return found


def _orders_kept(ledger: Ledger, held: dict[str, orders_pb2.Order]) -> Check:
    check = Check("every order answered OK is kept, with its items and total")
    for acked in ledger.acked.values():
        order = held.get(acked.order_id)
        if order is None:
            check.breach(f"{acked.order_id} was answered OK and is gone")
            continue
        items = {item.sku: item.quantity for item in order.items}
        if items != acked.items or order.total_cents != acked.total_cents:
            check.breach(
                f"{acked.order_id}: holds {items} for {order.total_cents},"
                f" answered {acked.items} for {acked.total_cents}"
            )
        if acked.cancelled and order.status != CANCELLED:
            check.breach(f"{acked.order_id}: cancel answered OK, status {order.status}")
        if not acked.cancel_sent and order.status != CONFIRMED:
            check.breach(f"{acked.order_id}: never cancelled, status {order.status}")
    unknown = len(set(held) - set(ledger.acked))
    check.detail = f"{len(ledger.acked)} acknowledged, {len(held)} held" + (
        f" ({unknown} whose answer the client never got)" if unknown else ""
    )
    return check


async def _notified_once(
    notifier: notifier_pb2_grpc.NotifierServiceAsyncStub,
    customers: list[str],
    held: dict[str, orders_pb2.Order],
) -> Check:
    check = Check("every confirmed order notified once, every cancelled one once more")
    kinds: collections.Counter[tuple[str, int]] = collections.Counter()
    for customer in customers:
        token = ""
        while True:
            reply = await notifier.ListNotifications(
                notifier_pb2.ListNotificationsRequest(
                    customer_id=customer, page_size=500, page_token=token
                ),
                timeout=10,
            )
            kinds.update((n.order_id, n.kind) for n in reply.notifications)
            if not (token := reply.next_page_token):
                break
    for order_id, order in held.items():
        want = {KIND_CONFIRMED: 1, KIND_CANCELLED: 1 if order.status == CANCELLED else 0}
        for kind, count in want.items():
            got = kinds[(order_id, kind)]
            if got != count:
                what = "lost" if got < count else "duplicated"
                name = notifier_pb2.NotificationKind.Name(kind)
                check.breach(f"{order_id}: {got} x {name}, expected {count} ({what})")
    check.detail = f"{sum(kinds.values())} notifications for {len(held)} orders"
    return check


async def _stock_adds_up(
    inventory: inventory_pb2_grpc.InventoryServiceAsyncStub,
    initial: dict[str, inventory_pb2.StockLevel],
    held: dict[str, orders_pb2.Order],
) -> Check:
    check = Check("stock adds up: initial - reserved by confirmed orders = available")
    live: collections.Counter[str] = collections.Counter()
    for order in held.values():
        if order.status == CONFIRMED:
            live.update({item.sku: item.quantity for item in order.items})
    for sku, before in initial.items():
        now = await inventory.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=10)
        if now.available != before.available - live[sku]:
            check.breach(
                f"{sku}: available {now.available}, expected {before.available} - {live[sku]}"
            )
        if now.reserved != before.reserved + live[sku]:
            check.breach(
                f"{sku}: reserved {now.reserved}, expected {before.reserved} + {live[sku]}"
                " (a reservation without a confirmed order, or one missing)"
            )
    check.detail = f"{len(initial)} SKUs, {sum(live.values())} units held by confirmed orders"
    return check
