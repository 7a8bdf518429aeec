"""What the bench asks of the running stack before it measures: health, stock, orders."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import grpc
from grpc.aio import Channel  # `grpc` inside Target is its field
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.registry import SERVICES
from shop_chassis.tls import TlsFiles
from shop_devstack.stack import Ports, grpc_serving, open_channel

from loadtest.ghz import HOST

MAX_ADJUSTMENT = 1_000_000  # the inventory service's AdjustStock limit
CREATE_TIMEOUT_S = 10.0
CANCEL_ORDERS = 50  # orders the cancel profiles cancel (round-robin; repeats are no-ops)


class StackError(Exception):
    """The stack is not there or refused to be prepared; the message says what to do."""


@dataclass(frozen=True)
class Target:
    grpc: dict[str, str]  # service -> host:port
    metrics_ports: dict[str, int]
    kafka: str = f"{HOST}:9092"  # the bootstrap server a second orders process joins
    tls: TlsFiles | None = None  # SHOP_TLS=1: the client certificate the bench shows

    @classmethod
    def from_ports(cls, ports: Ports, tls: TlsFiles | None = None) -> Target:
        return cls(
            {n: f"{HOST}:{p}" for n, p in ports.grpc.items()},
            dict(ports.metrics),
            f"{HOST}:{ports.kafka}",
            tls,
        )

    def channel(self, service: str) -> Channel:
        return open_channel(self.grpc[service], self.tls, server_name=service)


async def check_health(target: Target) -> None:
    async def one(name: str, address: str) -> str | None:
        try:
            if await grpc_serving(address, target.tls):
                return None
            return f"  {name:<10} {address}: health check says NOT_SERVING"
        except grpc.aio.AioRpcError as exc:
            return f"  {name:<10} {address}: {exc.code().name} ({exc.details()})"
        except OSError as exc:
            return f"  {name:<10} {address}: {exc}"

    problems = [p for p in await asyncio.gather(*(one(n, a) for n, a in target.grpc.items())) if p]
    if problems:
        tls = (
            "It runs with SHOP_TLS=1 here: the stack must too (`SHOP_TLS=1 make run`)."
            if target.tls
            else "If the stack runs with SHOP_TLS=1, run the bench with SHOP_TLS=1 too."
        )
        raise StackError(
            f"the shop stack is not answering on {HOST}:\n"
            + "\n".join(problems)
            + "\nStart it with `make run` in another terminal, wait for the 'shop is up'"
            " banner, then run the benchmark again. (Ports are read from"
            f" {', '.join(f'{s.env_prefix}_GRPC_PORT' for s in SERVICES)}"
            f" and the *_METRICS_PORT variables.) {tls}"
        )


def order_request(customer_id: str, sku: str) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id=customer_id,
        request_id=str(uuid.uuid4()),
        items=[orders_pb2.OrderItem(sku=sku, quantity=1)],
    )


async def restock(target: Target, need: dict[str, int]) -> None:
    """Raises each SKU's available stock to its need (plus spare) with AdjustStock."""
    async with target.channel("inventory") as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for sku, units in sorted(need.items()):
            at_least = units + 100
            try:
                level = await stub.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=5)
                if level.available >= at_least:
                    continue
                delta = min(at_least - level.available, MAX_ADJUSTMENT)
                level = await stub.AdjustStock(
                    inventory_pb2.AdjustStockRequest(
                        sku=sku, delta=delta, reason="loadtest restock"
                    ),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                raise StackError(
                    f"restocking {sku} failed: {exc.code().name} ({exc.details()})"
                ) from exc
            print(f"[prepare] {sku}: restocked by {delta}, now {level.available} available")


async def create_orders(
    address: str, sku: str, customer: str, count: int, tls: TlsFiles | None
) -> list[str]:
    """Creates `count` orders on the orders service at `address`; their ids."""
    async with open_channel(address, tls, server_name="orders") as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        try:
            orders = await asyncio.gather(
                *(
                    stub.CreateOrder(order_request(customer, sku), timeout=CREATE_TIMEOUT_S)
                    for _ in range(count)
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise StackError(
                f"creating orders to read and cancel failed: {exc.code().name} ({exc.details()})"
            ) from exc
    return [order.order_id for order in orders]


async def placeholder_values(
    target: Target, wanted: set[str], sku: str, run_id: str
) -> dict[str, str | list[str]]:
    """Values for the ${…} placeholders the chosen profiles use."""
    values: dict[str, str | list[str]] = {}
    if "ORDER_ID" in wanted:
        (values["ORDER_ID"],) = await create_orders(
            target.grpc["orders"], sku, f"bench-{run_id}", 1, target.tls
        )
    if "CANCEL_ORDER_ID" in wanted:
        values["CANCEL_ORDER_ID"] = await create_orders(
            target.grpc["orders"], sku, f"bench-cancel-{run_id}", CANCEL_ORDERS, target.tls
        )
    if unknown := wanted - set(values):
        raise StackError(f"profiles use placeholders nobody fills: {sorted(unknown)}")
    print(f"[prepare] created orders for {sorted(wanted)}")
    return values
