"""The chaos run's client: places orders at a steady rate, cancels some, and writes down
every answer. Like a real client it retries UNAVAILABLE and DEADLINE_EXCEEDED with the same
request_id, so a retry can never place a second order."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.tls import TlsFiles

from shop_devstack.stack import open_channel

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Every call to the next orders replica, like the orders -> inventory client.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


@dataclass
class AckedOrder:
    """An order CreateOrder answered OK: what the client was promised."""

    order_id: str
    customer_id: str
    items: dict[str, int]
    total_cents: int
    cancel_sent: bool = False
    cancelled: bool = False  # CancelOrder answered OK


@dataclass
class Ledger:
    """What clients were told, and how often they had to ask."""

    acked: dict[str, AckedOrder] = field(default_factory=dict)
    customers: set[str] = field(default_factory=set)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: int = 0
    abandoned: int = 0  # gave up retrying: the outcome is unknown to the client
    # (monotonic time, order id) of each CreateOrder answered OK at its first attempt
    first_tries: list[tuple[float, str]] = field(default_factory=list)

    def count(self, rpc: str, code: grpc.StatusCode) -> None:
        self.answers[f"{rpc} {code.name}"] += 1

    def errors(self) -> int:
        return sum(n for answer, n in self.answers.items() if not answer.endswith(" OK"))

    def first_order_after(self, moment: float) -> tuple[float, str] | None:
        """The first order sent after `moment` and answered OK at once."""
        return next(((t, order) for t, order in self.first_tries if t > moment), None)

    def figures(self) -> dict[str, Any]:
        creates = {k: v for k, v in self.answers.items() if k.startswith("CreateOrder")}
        return {
            "orders_placed": len(self.acked),
            "orders_cancelled": sum(order.cancelled for order in self.acked.values()),
            "answers": dict(sorted(self.answers.items())),
            "create_order_calls": sum(creates.values()),
            "client_retries": self.retries,
            "abandoned_requests": self.abandoned,
        }


class LoadClient:
    def __init__(
        self,
        target: str,
        skus: list[str],
        ledger: Ledger,
        *,
        rate: float,
        cancel_share: float = 0.2,
        customers: int = 25,
        give_up_after: float = 120.0,
        seed: int = 7,
        tls: TlsFiles | None = None,
    ) -> None:
        self.target = target
        self.tls = tls
        self.skus = skus
        self.ledger = ledger
        self.rate = rate
        self.cancel_share = cancel_share
        self.give_up_after = give_up_after
        self.random = random.Random(seed)
        run = uuid.uuid4().hex[:6]
        self.customers = [f"chaos-{run}-{i:02d}" for i in range(customers)]
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Place orders at `rate` per second until `stop`, then wait for the calls in flight."""
        async with open_channel(
            self.target,
            self.tls,
            server_name="orders",
            options=[("grpc.service_config", ROUND_ROBIN)],
        ) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.create_task(self._one_order(stub))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self._tasks:
                await asyncio.wait(self._tasks)

    async def _call(self, rpc: str, method: Any, request: Any) -> tuple[Any | None, float | None]:
        """One logical call, retried while the answer says "try again": the reply (None on a
        refusal or when giving up: the outcome is then unknown, and the verdict finds out) and,
        when the first attempt succeeded, when it was sent."""
        deadline = time.monotonic() + self.give_up_after
        backoff = 0.1
        attempt = 0
        while True:
            attempt += 1
            sent = time.monotonic()
            try:
                reply = await method(request, timeout=5)
            except grpc.aio.AioRpcError as error:
                self.ledger.count(rpc, error.code())
                if error.code() not in RETRYABLE:
                    return None, None
                if time.monotonic() > deadline:
                    self.ledger.abandoned += 1
                    return None, None
                self.ledger.retries += 1
                await asyncio.sleep(backoff * (0.5 + self.random.random()))
                backoff = min(backoff * 2, 2.0)
                continue
            self.ledger.count(rpc, grpc.StatusCode.OK)
            return reply, sent if attempt == 1 else None

    async def _one_order(self, stub: orders_pb2_grpc.OrderServiceAsyncStub) -> None:
        customer = self.random.choice(self.customers)
        skus = self.random.sample(self.skus, k=self.random.randint(1, min(2, len(self.skus))))
        items = {sku: self.random.randint(1, 3) for sku in skus}
        self.ledger.customers.add(customer)
        request = orders_pb2.CreateOrderRequest(
            customer_id=customer,
            request_id=str(uuid.uuid4()),
            items=[orders_pb2.OrderItem(sku=sku, quantity=q) for sku, q in items.items()],
        )
        order, sent = await self._call("CreateOrder", stub.CreateOrder, request)
        if order is None:
            return
        if sent is not None:
            self.ledger.first_tries.append((sent, order.order_id))
        acked = AckedOrder(order.order_id, customer, items, order.total_cents)
        self.ledger.acked[order.order_id] = acked
        if self.random.random() < self.cancel_share:
            await asyncio.sleep(self.random.uniform(0.1, 1.0))
            cancel = orders_pb2.CancelOrderRequest(order_id=order.order_id, reason="chaos")
            acked.cancel_sent = True
            cancelled, _ = await self._call("CancelOrder", stub.CancelOrder, cancel)
            acked.cancelled = cancelled is not None
