"""Wires the inventory service: database, outbox relay and pruner, gRPC API, Kafka agents."""

from __future__ import annotations

from pathlib import Path

import grpc
from shop.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from shop_chassis.db import DatabaseLifecycle, default_url, open_database
from shop_chassis.events import subscribe
from shop_chassis.kafka import INVENTORY_TOPIC, ORDERS_TOPIC, ShopApp, declare_topic
from shop_chassis.outbox import OutboxRelay
from shop_chassis.retention import Pruner
from shop_chassis.service import ServiceParts
from shop_chassis.settings import Env, ServiceSettings

from inventory.adapters.repository import SqlUnitOfWork
from inventory.adapters.tables import outbox, processed_events
from inventory.entrypoints.events import order_event_handlers
from inventory.entrypoints.grpc_api import InventoryServicer
from inventory.service_layer.stock import StockService

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    env = Env()
    database = open_database(
        env.text("INVENTORY_DATABASE_URL", default_url(settings.data_dir)),
        variable="INVENTORY_DATABASE_URL",
    )
    database.migrate(MIGRATIONS)
    relay = OutboxRelay(database, outbox, app)
    stock = StockService(
        SqlUnitOfWork(database),
        low_stock_threshold=env.integer("INVENTORY_LOW_STOCK_THRESHOLD", 5, maximum=1_000_000),
        events_committed=relay.wake,
    )
    orders_topic = declare_topic(app, settings, ORDERS_TOPIC)
    dead_letters = subscribe(app, settings, orders_topic, order_event_handlers(stock))
    servicer = InventoryServicer(stock)

    def register(server: grpc.aio.Server) -> None:
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[
            inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name
        ],
        grpc_registrars=[register],
        topics=[declare_topic(app, settings, INVENTORY_TOPIC), orders_topic, dead_letters],
        background=[
            DatabaseLifecycle(database),
            relay,
            Pruner(database, settings.retention, outbox=outbox, processed_events=processed_events),
        ],
    )
