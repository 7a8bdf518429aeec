"""Order confirmed -> notification: the bench's own client places orders at fixed rates
(open loop) while a StreamNotifications stream is open, and times each notification's arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop.orders.v1 import orders_pb2_grpc

from loadtest.profiles import NotificationPlan
from loadtest.stack import CREATE_TIMEOUT_S, StackError, Target, order_request

WARM_UP_S = 30.0  # at most this long for a probe order's notification to show up
PROBE_EVERY_S = 5.0
MAX_IN_FLIGHT = 256


@dataclass
class RateResult:
    """One rate of the plan: `latencies_ms` are CreateOrder returned -> arrived on stream;
    `create_latencies_ms` are the CreateOrder calls themselves (sent -> returned)."""

    target_rate: float
    placed: int = 0
    achieved_rate: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    create_latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    problem: str = ""

    @property
    def errors(self) -> int:
        return sum(self.failures.values()) + self.missing


class _Stream:
    """Reads StreamNotifications and notes when each ORDER_CONFIRMED arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # order_id -> perf_counter() at arrival
        self.changed = asyncio.Event()

    async def read(
        self,
        call: grpc.aio.UnaryStreamCall[
            notifier_pb2.StreamNotificationsRequest, notifier_pb2.Notification
        ],
    ) -> None:
        async for notification in call:
            if notification.kind == notifier_pb2.NOTIFICATION_KIND_ORDER_CONFIRMED:
                self.arrived.setdefault(notification.order_id, time.perf_counter())
                self.changed.set()

    async def wait_change(self, seconds: float) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), seconds)


def _stream_problem(reader: asyncio.Task[None]) -> str:
    if not reader.done():
        return ""
    if reader.cancelled():
        return "notification stream was cancelled"
    exc = reader.exception()
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"notification stream ended: {exc.code().name} ({exc.details()})"
    return f"notification stream ended early ({exc!r})"


async def measure(target: Target, plan: NotificationPlan) -> list[RateResult]:
    customer = f"bench-e2e-{uuid.uuid4().hex[:12]}"
    stream = _Stream()
    bound = WARM_UP_S + len(plan.rates) * (plan.seconds_per_rate + CREATE_TIMEOUT_S + plan.settle_s)
    async with (
        target.channel("orders") as orders_channel,
        target.channel("notifier") as notifier_channel,
    ):
        orders = orders_pb2_grpc.OrderServiceStub(orders_channel)
        notifier = notifier_pb2_grpc.NotifierServiceStub(notifier_channel)
        call = notifier.StreamNotifications(
            notifier_pb2.StreamNotificationsRequest(customer_id=customer), timeout=bound + 30
        )
        reader = asyncio.create_task(stream.read(call))
        try:
            await _warm_up(orders, stream, reader, customer, plan.sku)
            results = []
            for rate in plan.rates:
                print(
                    f"[notification] {rate:g} orders/s for {plan.seconds_per_rate:g}s", flush=True
                )
                results.append(await _one_rate(orders, stream, reader, customer, plan, rate))
            return results
        finally:
            call.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


async def _warm_up(
    orders: orders_pb2_grpc.OrderServiceAsyncStub,
    stream: _Stream,
    reader: asyncio.Task[None],
    customer: str,
    sku: str,
) -> None:
    """The subscription is live once a probe order's notification arrives."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.3)
    probes: list[str] = []
    deadline = loop.time() + WARM_UP_S
    next_probe = loop.time()
    while not any(p in stream.arrived for p in probes):
        if problem := _stream_problem(reader):
            raise StackError(problem)
        if loop.time() > deadline:
            raise StackError(
                f"no notification arrived on the stream within {WARM_UP_S:g}s of a probe"
                " order: is the notifier consuming from Kafka? See var/logs/notifier.log"
            )
        if loop.time() >= next_probe:
            try:
                probe = await orders.CreateOrder(
                    order_request(customer, sku), timeout=CREATE_TIMEOUT_S
                )
            except grpc.aio.AioRpcError as exc:
                raise StackError(f"probe order failed: {exc.code().name}") from exc
            probes.append(probe.order_id)
            next_probe = loop.time() + PROBE_EVERY_S
        await stream.wait_change(0.2)


async def _one_rate(
    orders: orders_pb2_grpc.OrderServiceAsyncStub,
    stream: _Stream,
    reader: asyncio.Task[None],
    customer: str,
    plan: NotificationPlan,
    rate: float,
) -> RateResult:
    """Orders on a fixed schedule for the plan's seconds; a call the in-flight cap holds past
    the window is not sent, so the achieved rate shows how far the stack kept up."""
    loop = asyncio.get_running_loop()
    result = RateResult(rate)
    returned: dict[str, float] = {}
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def place() -> None:
        sent = time.perf_counter()
        try:
            order = await orders.CreateOrder(
                order_request(customer, plan.sku), timeout=CREATE_TIMEOUT_S
            )
            returned[order.order_id] = time.perf_counter()
            result.create_latencies_ms.append((returned[order.order_id] - sent) * 1000)
        except grpc.aio.AioRpcError as exc:
            result.failures[exc.code().name] += 1
        finally:
            in_flight.release()

    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    end = start + plan.seconds_per_rate
    for i in range(int(rate * plan.seconds_per_rate)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() >= end:
            break
        try:
            await asyncio.wait_for(in_flight.acquire(), end - loop.time())
        except TimeoutError:
            break
        tasks.append(asyncio.create_task(place()))
    result.placed = len(tasks)
    result.achieved_rate = len(tasks) / plan.seconds_per_rate
    await asyncio.gather(*tasks)
    deadline = loop.time() + plan.settle_s
    while loop.time() < deadline and not reader.done():
        if all(order_id in stream.arrived for order_id in returned):
            break
        await stream.wait_change(0.2)
    result.problem = _stream_problem(reader)
    for order_id, returned_at in returned.items():
        if order_id in stream.arrived:
            result.latencies_ms.append((stream.arrived[order_id] - returned_at) * 1000)
        else:
            result.missing += 1
    return result
