"""gRPC entrypoint of the orders service: validate, call one use case, map errors."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.errors import AlreadyExists, NotFound, Unavailable, UpstreamError
from shop_chassis.validation import Violations, decode_page_token, encode_page_token

from orders.adapters.inventory_client import InventoryCallFailed
from orders.domain.model import Line, Order, OrderError, OrderNotFound, OrderStatus, RequestIdReused
from orders.service_layer.ordering import Ordering

Context = grpc.aio.ServicerContext[Any, Any]


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, ordering: Ordering) -> None:
        self.ordering = ordering

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: Context
    ) -> orders_pb2.Order:
        violations = Violations()
        violations.identifier("customer_id", request.customer_id)
        violations.uuid("request_id", request.request_id, required=False)
        violations.order_lines("items", request.items)
        violations.raise_if_any()
        lines = [Line(item.sku, item.quantity) for item in request.items]
        try:
            order = await self.ordering.create_order(
                request.customer_id, lines, request.request_id or None
            )
        except (OrderError, InventoryCallFailed) as error:
            raise _api_error(error) from error
        return _order(order)

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: Context
    ) -> orders_pb2.Order:
        violations = Violations()
        violations.uuid("order_id", request.order_id)
        violations.raise_if_any()
        try:
            return _order(await self.ordering.get_order(request.order_id))
        except OrderError as error:
            raise _api_error(error) from error

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: Context
    ) -> orders_pb2.ListOrdersResponse:
        violations = Violations()
        violations.identifier("customer_id", request.customer_id)
        page_size = violations.page_size("page_size", request.page_size, default=50, maximum=500)
        query = {"customer_id": request.customer_id}
        position = decode_page_token(
            violations, "page_token", request.page_token, query, {"before": int}
        )
        violations.raise_if_any()
        before = int(position["before"]) if position else None
        found = await self.ordering.list_orders(request.customer_id, page_size + 1, before)
        page = found[:page_size]
        token = encode_page_token({"before": page[-1][0]}, query) if len(found) > page_size else ""
        return orders_pb2.ListOrdersResponse(
            orders=[_order(order) for _, order in page], next_page_token=token
        )

    async def CancelOrder(
        self, request: orders_pb2.CancelOrderRequest, context: Context
    ) -> orders_pb2.Order:
        violations = Violations()
        violations.uuid("order_id", request.order_id)
        violations.max_length("reason", request.reason, 500)
        violations.raise_if_any()
        try:
            return _order(await self.ordering.cancel_order(request.order_id, request.reason))
        except OrderError as error:
            raise _api_error(error) from error


def _api_error(error: Exception) -> Exception:
    match error:
        case OrderNotFound():
            return NotFound("order", error.order_id)
        case RequestIdReused():
            return AlreadyExists(
                str(error),
                reason="REQUEST_ID_REUSED",
                metadata={"request_id": error.request_id, "order_id": error.order_id},
            )
        case InventoryCallFailed() if error.is_refusal:
            return UpstreamError(error.status)
        case InventoryCallFailed():
            return Unavailable(f"inventory is unavailable ({error.code.name}); retry later")
    return error


_STATUS = {
    OrderStatus.CONFIRMED: orders_pb2.ORDER_STATUS_CONFIRMED,
    OrderStatus.CANCELLED: orders_pb2.ORDER_STATUS_CANCELLED,
}


def _order(order: Order) -> orders_pb2.Order:
    created, updated = Timestamp(), Timestamp()
    created.FromDatetime(order.create_time)
    updated.FromDatetime(order.update_time)
    return orders_pb2.Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=[
            orders_pb2.OrderItem(
                sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents
            )
            for line in order.lines
        ],
        status=_STATUS[order.status],
        total_cents=order.total_cents,
        create_time=created,
        update_time=updated,
        cancel_reason=order.cancel_reason,
    )
