"""Wires the orders service: database, outbox relay and pruner, inventory client, gRPC API."""

from __future__ import annotations

from pathlib import Path

import grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop_chassis.db import DatabaseLifecycle, default_url, open_database
from shop_chassis.kafka import ORDERS_TOPIC, ShopApp, declare_topic
from shop_chassis.outbox import OutboxRelay
from shop_chassis.registry import DEFAULT_GRPC_PORTS
from shop_chassis.retention import Pruner
from shop_chassis.service import ServiceParts
from shop_chassis.settings import Env, ServiceSettings

from orders.adapters.inventory_client import InventoryClient
from orders.adapters.repository import SqlUnitOfWork
from orders.adapters.tables import outbox
from orders.entrypoints.grpc_api import OrderServicer
from orders.service_layer.ordering import Ordering

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    env = Env()
    database = open_database(
        env.text("ORDERS_DATABASE_URL", default_url(settings.data_dir)),
        variable="ORDERS_DATABASE_URL",
    )
    database.migrate(MIGRATIONS)
    relay = OutboxRelay(database, outbox, app)
    inventory = InventoryClient(
        env.text("INVENTORY_ADDRESS", f"127.0.0.1:{DEFAULT_GRPC_PORTS['inventory']}"),
        timeout_seconds=env.number("ORDERS_INVENTORY_TIMEOUT_SECONDS", 2.0, minimum=0.05),
        tls=settings.tls,
    )
    servicer = OrderServicer(
        Ordering(SqlUnitOfWork(database), inventory, events_committed=relay.wake)
    )

    def register(server: grpc.aio.Server) -> None:
        orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name],
        grpc_registrars=[register],
        topics=[declare_topic(app, settings, ORDERS_TOPIC)],
        background=[
            DatabaseLifecycle(database),
            relay,
            Pruner(database, settings.retention, outbox=outbox),
            inventory,
        ],
    )
