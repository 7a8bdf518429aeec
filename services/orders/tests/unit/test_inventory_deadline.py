"""Deadline propagation, seen from inventory's side: orders' gRPC server (the chassis's, with
the real servicer and inventory client, on the in-memory unit of work) calls a stand-in
inventory server on loopback that notes how long each call it receives has left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from orders.adapters.inventory_client import InventoryClient
from orders.adapters.memory import InMemoryUnitOfWork
from orders.entrypoints.grpc_api import OrderServicer
from orders.service_layer.ordering import Ordering
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.grpc import GrpcServerService
from shop_devstack.procs import free_port
from shop_devstack.testing import eventually

INVENTORY_TIMEOUT = 2.0  # ORDERS_INVENTORY_TIMEOUT_SECONDS
SLACK = 0.05  # grpc-timeout travels rounded up to its unit


class Inventory(inventory_pb2_grpc.InventoryServiceServicer):
    """Notes each call's remaining time; reserves after `reserve_delay` seconds."""

    def __init__(self) -> None:
        self.reserve_remaining: list[float] = []
        self.release_remaining: list[float] = []
        self.reserve_delay = 0.0

    async def ReserveStock(
        self, request: inventory_pb2.ReserveStockRequest, context: Any
    ) -> inventory_pb2.Reservation:
        self.reserve_remaining.append(context.time_remaining())
        await asyncio.sleep(self.reserve_delay)
        return inventory_pb2.Reservation(
            order_id=request.order_id,
            status=inventory_pb2.RESERVATION_STATUS_HELD,
            items=[
                inventory_pb2.ReservationItem(sku=i.sku, quantity=i.quantity, unit_price_cents=100)
                for i in request.items
            ],
        )

    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Any
    ) -> inventory_pb2.Reservation:
        self.release_remaining.append(context.time_remaining())
        return inventory_pb2.Reservation(
            order_id=request.order_id, status=inventory_pb2.RESERVATION_STATUS_RELEASED
        )


@dataclass
class System:
    orders: orders_pb2_grpc.OrderServiceStub
    inventory: Inventory


def serve(address: str, register: Any) -> GrpcServerService:
    return GrpcServerService(
        address=address, service_names=[], registrars=[register], grace_seconds=0
    )


@pytest.fixture
async def system() -> AsyncIterator[System]:
    inventory = Inventory()
    inventory_address = f"127.0.0.1:{free_port()}"
    inventory_server = serve(
        inventory_address,
        lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(inventory, s),
    )
    client = InventoryClient(inventory_address, timeout_seconds=INVENTORY_TIMEOUT)
    servicer = OrderServicer(Ordering(InMemoryUnitOfWork(), client, events_committed=lambda: None))
    orders_address = f"127.0.0.1:{free_port()}"
    orders_server = serve(
        orders_address, lambda s: orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, s)
    )
    await inventory_server.on_start()
    await client.on_start()
    await orders_server.on_start()
    try:
        async with grpc.aio.insecure_channel(orders_address) as channel:
            yield System(orders_pb2_grpc.OrderServiceStub(channel), inventory)
    finally:
        await orders_server.on_stop()
        await client.on_stop()
        await inventory_server.on_stop()


def create_order() -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id="alice", items=[orders_pb2.OrderItem(sku="MUG-001", quantity=1)]
    )


async def test_inventory_gets_no_more_than_the_time_the_callers_deadline_leaves(
    system: System,
) -> None:
    await system.orders.CreateOrder(create_order(), timeout=0.6)

    (remaining,) = system.inventory.reserve_remaining
    assert 0.3 < remaining <= 0.6 + SLACK  # not the 2 s orders would give inventory on its own


async def test_a_caller_with_time_to_spare_leaves_inventory_its_own_timeout(
    system: System,
) -> None:
    await system.orders.CreateOrder(create_order(), timeout=20)
    await system.orders.CreateOrder(create_order())  # no deadline: the server's 30 s default

    assert all(
        INVENTORY_TIMEOUT - 0.5 < r <= INVENTORY_TIMEOUT + SLACK
        for r in system.inventory.reserve_remaining
    )
    assert len(system.inventory.reserve_remaining) == 2


async def test_undoing_a_reservation_the_caller_gave_up_on_gets_the_full_timeout(
    system: System,
) -> None:
    system.inventory.reserve_delay = 1.0  # outlives the caller's deadline

    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await system.orders.CreateOrder(create_order(), timeout=0.4)

    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def released() -> None:
        assert system.inventory.release_remaining

    await eventually(released, within=5)
    (remaining,) = system.inventory.release_remaining
    assert INVENTORY_TIMEOUT - 0.5 < remaining <= INVENTORY_TIMEOUT + SLACK
