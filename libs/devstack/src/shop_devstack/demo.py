"""`make demo`: a few orders against a running `make run`, narrated."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from shop.orders.v1 import orders_pb2

from shop_devstack.procs import StackError
from shop_devstack.stack import Ports, client_tls_from_env, grpc_serving
from shop_devstack.testing import Shop, error_details, eventually
from shop_devstack.trace import find_order_traces, order_search_url, trace_url

CREATE_ORDER = "/shop.orders.v1.OrderService/CreateOrder"


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"


def not_answering(name: str, address: str, tls: bool) -> str:
    """Why a service may not answer, and what to do: the stack is down, or one side speaks
    TLS and the other does not."""
    if tls:
        return (
            f"{name} does not answer on {address} over TLS: start the system with"
            " `SHOP_TLS=1 make run` first (a plaintext `make run` refuses TLS)"
        )
    return (
        f"{name} does not answer on {address}: start the system with `make run` first"
        " (if it runs with SHOP_TLS=1, run this with SHOP_TLS=1 too)"
    )


async def demo() -> int:
    ports = Ports.from_env()
    try:
        tls = client_tls_from_env()
    except StackError as exc:
        print(f"error: {exc}")
        return 1
    addresses = {name: f"127.0.0.1:{port}" for name, port in ports.grpc.items()}
    for name, address in addresses.items():
        try:
            await grpc_serving(address, tls)
        except grpc.aio.AioRpcError:
            print(not_answering(name, address, tls is not None))
            return 1
    shop = Shop(addresses, tls)
    customer = f"demo-{uuid.uuid4().hex[:6]}"
    try:
        print(f"customer {customer}\n")
        request_id = str(uuid.uuid4())
        order = await shop.create_order(customer, {"MUG-001": 2, "SOCKS-3P": 1}, request_id)
        print(f"1. CreateOrder -> {orders_pb2.OrderStatus.Name(order.status)} {order.order_id}")
        for item in order.items:
            print(f"     {item.quantity} x {item.sku} at {_money(item.unit_price_cents)}")
        print(f"     total {_money(order.total_cents)} (prices from the inventory catalog)")

        again = await shop.create_order(customer, {"MUG-001": 2, "SOCKS-3P": 1}, request_id)
        print(f"2. Same request_id again -> same order: {again.order_id == order.order_id}")

        try:
            await shop.create_order(customer, {"BOOK-DDIA": 1000})
        except grpc.aio.AioRpcError as error:
            (info,) = error_details(error)
            print(f"3. 1000 x BOOK-DDIA -> {error.code().name}: {error.details()}")
            print(f"     reason {info.reason}, {dict(info.metadata)}")

        second = await shop.create_order(customer, {"TEE-BLK-M": 1})
        cancelled = await shop.orders.CancelOrder(
            orders_pb2.CancelOrderRequest(order_id=second.order_id, reason="demo")
        )
        print(
            f"4. CreateOrder + CancelOrder {second.order_id} -> "
            f"{orders_pb2.OrderStatus.Name(cancelled.status)}"
        )

        async def three_notifications() -> int:
            found = await shop.notifications(customer_id=customer)
            assert len(found) >= 3
            return len(found)

        await eventually(three_notifications, within=15)
        print("\nNotifications (newest first), via Kafka and the notifier:")
        for note in await shop.notifications(customer_id=customer):
            print(f"   {note.create_time.ToDatetime():%H:%M:%S.%f}  {note.message}")
        jaeger = f"http://127.0.0.1:{ports.jaeger_ui}"

        async def create_order_trace() -> str:
            traces = await asyncio.to_thread(find_order_traces, order.order_id, jaeger)
            found = [
                t for t in traces if any(s["operationName"] == CREATE_ORDER for s in t["spans"])
            ]
            assert found, "not exported yet"
            return str(found[0]["traceID"])

        print(f"\nThe first order's traces: make trace ID={order.order_id}")
        try:
            trace_id = await eventually(create_order_trace, within=15)
            print(f"  CreateOrder in Jaeger: {trace_url(trace_id, jaeger)}")
        except (AssertionError, OSError):
            print(f"  (Jaeger at {jaeger} has not shown its CreateOrder trace yet)")
        print(f"  all of the order's traces: {order_search_url(order.order_id, jaeger)}")
        print(f"  everything about it: make story ID={order.order_id}")
        return 0
    finally:
        await shop.close()


def main() -> int:
    return asyncio.run(demo())
