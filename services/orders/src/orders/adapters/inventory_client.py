"""The gRPC client orders uses to reserve and release stock in inventory.

One channel for the process (no per-request connection setup), a deadline on every call,
never later than the deadline of the request being served (`shop_chassis.deadlines`), and
transparent retries of UNAVAILABLE through the channel's service config — safe
because ReserveStock and ReleaseStock are idempotent per order id. With SHOP_TLS=1 the
channel is mutual TLS: orders shows its own certificate and accepts only a server whose
certificate, signed by the shop's CA, names `inventory`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status
from mode import Service
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop_chassis.deadlines import bounded_timeout
from shop_chassis.grpc_metrics import ClientMetricsInterceptor
from shop_chassis.tls import TlsFiles, server_name_option

from orders.domain.model import Line, PricedLine

INVENTORY_CERTIFICATE_NAME = "inventory"

SERVICE_CONFIG = json.dumps(
    {
        # Every call to the next address: INVENTORY_ADDRESS may name several replicas
        # ("ipv4:127.0.0.1:50052,127.0.0.1:50062", or dns:/// of a headless Service), and
        # one HTTP/2 connection would otherwise carry every call to one of them.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "shop.inventory.v1.InventoryService"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


# Inventory's definite "no": nothing was reserved, and the caller has something to fix.
REFUSALS = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


class InventoryCallFailed(Exception):
    """Inventory answered with an error; `status` carries its code, message and details."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(f"inventory: {error.code().name}: {error.details()}")
        self.code = error.code()
        self.message = error.details() or ""
        # The google.rpc.Status with details when inventory sent one, else code + message.
        self.status = rpc_status.from_call(error) or status_pb2.Status(  # type: ignore[arg-type]
            code=self.code.value[0], message=self.message
        )

    @property
    def is_refusal(self) -> bool:
        """True for a definite "no"; False when the outcome is unknown (timeout, outage)."""
        return self.code in REFUSALS


class InventoryClient(Service):
    def __init__(
        self, address: str, timeout_seconds: float, tls: TlsFiles | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stub: inventory_pb2_grpc.InventoryServiceAsyncStub | None = None

    async def on_start(self) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", SERVICE_CONFIG),
        ]
        interceptors = [ClientMetricsInterceptor()]
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(
                self.address, options=options, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.secure_channel(
                self.address,
                self.tls.channel_credentials(),
                options=[*options, server_name_option(INVENTORY_CERTIFICATE_NAME)],
                interceptors=interceptors,
            )
        self._stub = inventory_pb2_grpc.InventoryServiceStub(self._channel)

    async def on_stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    @property
    def stub(self) -> inventory_pb2_grpc.InventoryServiceAsyncStub:
        if self._stub is None:
            raise RuntimeError("InventoryClient used before it started")
        return self._stub

    async def reserve(
        self, order_id: str, lines: Sequence[Line], attempt_id: str
    ) -> list[PricedLine]:
        request = inventory_pb2.ReserveStockRequest(
            order_id=order_id,
            attempt_id=attempt_id,
            items=[
                inventory_pb2.ReserveStockRequest.Item(sku=line.sku, quantity=line.quantity)
                for line in lines
            ],
        )
        try:
            reservation = await self.stub.ReserveStock(
                request, timeout=bounded_timeout(self.timeout_seconds)
            )
        except grpc.aio.AioRpcError as error:
            raise InventoryCallFailed(error) from error
        return [
            PricedLine(item.sku, item.quantity, item.unit_price_cents) for item in reservation.items
        ]

    async def release(self, order_id: str, attempt_id: str) -> None:
        """Undo `attempt_id`'s reservation, unless a later attempt has reserved the order.

        The whole fixed timeout, whatever the caller has left: this undoes a reservation
        whose caller gave up (its deadline passed), and must not give up with it.
        """
        request = inventory_pb2.ReleaseStockRequest(order_id=order_id, attempt_id=attempt_id)
        try:
            await self.stub.ReleaseStock(request, timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as error:
            raise InventoryCallFailed(error) from error
