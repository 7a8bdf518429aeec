"""gRPC entrypoint of the inventory service: validate, call one use case, map errors."""

from __future__ import annotations

from typing import Any

import grpc
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop_chassis.errors import AlreadyExists, FailedPrecondition, NotFound, OutOfRange
from shop_chassis.validation import Violations, decode_page_token, encode_page_token

from inventory.domain.model import (
    InsufficientStock,
    Line,
    Reservation,
    ReservationMismatch,
    ReservationStatus,
    StockError,
    StockLevel,
    StockWouldExceedMaximum,
    StockWouldGoNegative,
    UnknownReservation,
    UnknownSku,
)
from inventory.service_layer.stock import StockService

Context = grpc.aio.ServicerContext[Any, Any]

MAX_ADJUSTMENT = 1_000_000


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, stock: StockService) -> None:
        self.stock = stock

    async def ListProducts(
        self, request: inventory_pb2.ListProductsRequest, context: Context
    ) -> inventory_pb2.ListProductsResponse:
        violations = Violations()
        page_size = violations.page_size("page_size", request.page_size, default=50, maximum=500)
        position = decode_page_token(
            violations, "page_token", request.page_token, {}, {"after": str}
        )
        violations.raise_if_any()
        after = str(position["after"]) if position else None
        found = await self.stock.list_products(page_size + 1, after)
        page = found[:page_size]
        token = encode_page_token({"after": page[-1].sku}, {}) if len(found) > page_size else ""
        return inventory_pb2.ListProductsResponse(
            products=[
                inventory_pb2.Product(sku=p.sku, name=p.name, price_cents=p.price_cents)
                for p in page
            ],
            next_page_token=token,
        )

    async def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        violations = Violations()
        violations.sku("sku", request.sku)
        violations.raise_if_any()
        try:
            return _stock_level(await self.stock.get_stock(request.sku))
        except StockError as error:
            raise _api_error(error) from error

    async def AdjustStock(
        self, request: inventory_pb2.AdjustStockRequest, context: Context
    ) -> inventory_pb2.StockLevel:
        violations = Violations()
        violations.sku("sku", request.sku)
        if request.delta == 0 or abs(request.delta) > MAX_ADJUSTMENT:
            violations.add("delta", f"must be non-zero and at most {MAX_ADJUSTMENT} either way")
        violations.max_length("reason", request.reason, 500)
        violations.raise_if_any()
        try:
            level = await self.stock.adjust_stock(request.sku, request.delta, request.reason)
        except StockError as error:
            raise _api_error(error) from error
        return _stock_level(level)

    async def ReserveStock(
        self, request: inventory_pb2.ReserveStockRequest, context: Context
    ) -> inventory_pb2.Reservation:
        violations = Violations()
        violations.uuid("order_id", request.order_id)
        violations.uuid("attempt_id", request.attempt_id, required=False)
        violations.order_lines("items", request.items)
        violations.raise_if_any()
        lines = [Line(item.sku, item.quantity) for item in request.items]
        try:
            return _reservation(
                await self.stock.reserve(request.order_id, lines, request.attempt_id or None)
            )
        except StockError as error:
            raise _api_error(error) from error

    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Context
    ) -> inventory_pb2.Reservation:
        violations = Violations()
        violations.uuid("order_id", request.order_id)
        violations.uuid("attempt_id", request.attempt_id, required=False)
        violations.raise_if_any()
        try:
            return _reservation(
                await self.stock.release(request.order_id, request.attempt_id or None)
            )
        except StockError as error:
            raise _api_error(error) from error


def _api_error(error: StockError) -> Exception:
    match error:
        case UnknownSku():
            return NotFound("product", error.sku)
        case UnknownReservation():
            return NotFound("reservation", error.order_id)
        case InsufficientStock():
            return FailedPrecondition(
                str(error),
                reason="INSUFFICIENT_STOCK",
                metadata={
                    "sku": error.sku,
                    "requested": str(error.requested),
                    "available": str(error.available),
                },
            )
        case StockWouldGoNegative():
            return FailedPrecondition(
                str(error),
                reason="STOCK_WOULD_GO_NEGATIVE",
                metadata={
                    "sku": error.sku,
                    "delta": str(error.delta),
                    "available": str(error.available),
                },
            )
        case StockWouldExceedMaximum():
            return OutOfRange(
                str(error),
                reason="STOCK_WOULD_EXCEED_MAXIMUM",
                metadata={
                    "sku": error.sku,
                    "delta": str(error.delta),
                    "available": str(error.available),
                },
            )
        case ReservationMismatch():
            return AlreadyExists(
                str(error), reason="RESERVATION_EXISTS", metadata={"order_id": error.order_id}
            )
    return error


def _stock_level(level: StockLevel) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        sku=level.sku, available=level.available, reserved=level.reserved
    )


_STATUS = {
    ReservationStatus.HELD: inventory_pb2.RESERVATION_STATUS_HELD,
    ReservationStatus.RELEASED: inventory_pb2.RESERVATION_STATUS_RELEASED,
}


def _reservation(reservation: Reservation) -> inventory_pb2.Reservation:
    return inventory_pb2.Reservation(
        order_id=reservation.order_id,
        status=_STATUS[reservation.status],
        items=[
            inventory_pb2.ReservationItem(
                sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents
            )
            for line in reservation.lines
        ],
    )
