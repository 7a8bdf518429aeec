"""A small client for the running services and polling helpers, for end-to-end tests."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.tls import TlsFiles

from shop_devstack.stack import Stack, open_channel

T = TypeVar("T")


class Shop:
    """The three services' stubs; over mutual TLS with `tls` (a client certificate)."""

    def __init__(self, addresses: dict[str, str], tls: TlsFiles | None = None) -> None:
        self._channels = {
            name: open_channel(address, tls, server_name=name)
            for name, address in addresses.items()
        }
        self.orders = orders_pb2_grpc.OrderServiceStub(self._channels["orders"])
        self.inventory = inventory_pb2_grpc.InventoryServiceStub(self._channels["inventory"])
        self.notifier = notifier_pb2_grpc.NotifierServiceStub(self._channels["notifier"])

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def create_order(
        self, customer_id: str, items: dict[str, int], request_id: str = ""
    ) -> orders_pb2.Order:
        return await self.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(
                customer_id=customer_id,
                request_id=request_id,
                items=[orders_pb2.OrderItem(sku=s, quantity=q) for s, q in items.items()],
            ),
            timeout=10,
        )

    async def stock(self, sku: str) -> inventory_pb2.StockLevel:
        return await self.inventory.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=5)

    async def add_product_stock(self, sku: str, delta: int) -> inventory_pb2.StockLevel:
        return await self.inventory.AdjustStock(
            inventory_pb2.AdjustStockRequest(sku=sku, delta=delta, reason="test"), timeout=5
        )

    async def notifications(
        self, customer_id: str = "", order_id: str = ""
    ) -> list[notifier_pb2.Notification]:
        reply = await self.notifier.ListNotifications(
            notifier_pb2.ListNotificationsRequest(customer_id=customer_id, order_id=order_id),
            timeout=5,
        )
        return list(reply.notifications)


def new_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


async def eventually(check: Callable[[], Awaitable[T]], within: float = 20.0) -> T:
    """Polls `check` until it returns without AssertionError; re-raises the last one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def finished(process: asyncio.subprocess.Process, within: float) -> tuple[bytes, bytes]:
    """`process.communicate()` (b"" for an output not piped), given `within` seconds; a
    process still running then is killed and the test fails: a test leaves no process of its
    own behind."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(
            f"process {process.pid} was still running after {within:g} s (now killed)"
        ) from None
    return stdout or b"", stderr or b""


def error_details(error: grpc.aio.AioRpcError) -> list[Any]:
    """The google.rpc detail messages of a failed call, unpacked."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {error.code()}: {error.details()}"
    found: list[Any] = []
    for detail in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.ResourceInfo,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found.append(message)
    return found


def scrape(stack: Stack, service: str, openmetrics: bool = False, replica: int = 1) -> str:
    """The /metrics page of `service` (its replica `replica`) in `stack`."""
    port = stack.ports.replica(service, replica)[1]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if openmetrics:
        request.add_header("Accept", "application/openmetrics-text; version=1.0.0")
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def samples(
    stack: Stack, service: str, name: str, replica: int = 1
) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of metric `name` on `service`'s /metrics (replica `replica`), by labels."""
    found = {}
    for family in text_string_to_metric_families(scrape(stack, service, replica=replica)):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = sample.value
    return found


def value(stack: Stack, service: str, name: str, replica: int = 1, **labels: str) -> float:
    """The sample of metric `name` with exactly `labels` (0 if there is none yet)."""
    return samples(stack, service, name, replica).get(frozenset(labels.items()), 0.0)
