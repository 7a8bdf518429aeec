"""Bytes that are not a protobuf message, sent to every method of the three running services:
each is refused INVALID_ARGUMENT naming the message it expected, and counted so."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2
from shop.inventory.v1 import inventory_pb2
from shop.notifier.v1 import notifier_pb2
from shop.orders.v1 import orders_pb2
from shop_devstack.stack import Stack
from shop_devstack.testing import Shop, error_details, eventually, new_customer, value

pytestmark = pytest.mark.integration

SERVICES = {
    "orders": orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
    "inventory": inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"],
    "notifier": notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"],
}
METHODS = [(name, method) for name, service in SERVICES.items() for method in service.methods]
GARBAGE = b"\xff\xff\xff\xff"  # a field tag whose varint never ends


async def send_raw(address: str, method: MethodDescriptor, body: bytes) -> None:
    """Call `method` with `body` as the request's bytes, as they are."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    async with grpc.aio.insecure_channel(address) as channel:
        if method.server_streaming:
            call = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            await call(body, timeout=10).read()
        else:
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            await call(body, timeout=10)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
async def test_every_method_refuses_bytes_that_are_not_its_request_as_invalid_argument(
    stack: Stack, services: dict[str, str], service: str, method: MethodDescriptor
) -> None:
    labels = {
        "grpc_type": "server_stream" if method.server_streaming else "unary",
        "grpc_service": method.containing_service.full_name,
        "grpc_method": method.name,
    }
    counted = value(
        stack, service, "grpc_server_handled_total", **labels, grpc_code="INVALID_ARGUMENT"
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send_raw(services[service], method, GARBAGE)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"request is not a valid {method.input_type.full_name}"
    (bad_request,) = error_details(refused.value)
    assert isinstance(bad_request, error_details_pb2.BadRequest)

    async def counted_as_invalid_argument() -> None:  # the server counts once the status is sent
        handled = {
            code: value(stack, service, "grpc_server_handled_total", **labels, grpc_code=code)
            for code in ("INVALID_ARGUMENT", "UNKNOWN")
        }
        assert handled == {"INVALID_ARGUMENT": counted + 1, "UNKNOWN": 0}

    await eventually(counted_as_invalid_argument, within=5)


async def test_a_valid_request_after_a_refused_one_is_served(
    services: dict[str, str], shop: Shop
) -> None:
    get_order = SERVICES["orders"].methods_by_name["GetOrder"]
    with pytest.raises(grpc.aio.AioRpcError):
        await send_raw(services["orders"], get_order, GARBAGE)

    order = await shop.create_order(new_customer(), {"MUG-001": 1})
    found = await shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order.order_id))

    assert found == order
