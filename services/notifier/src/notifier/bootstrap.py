"""Wires the notifier service: database and pruner, Kafka agents, broadcaster and gRPC API."""

from __future__ import annotations

from pathlib import Path

import grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.db import DatabaseLifecycle, default_url, open_database
from shop_chassis.events import subscribe
from shop_chassis.kafka import INVENTORY_TOPIC, ORDERS_TOPIC, ShopApp, declare_topic
from shop_chassis.retention import Pruner
from shop_chassis.service import ServiceParts
from shop_chassis.settings import Env, ServiceSettings

from notifier.adapters.broadcast import Broadcaster
from notifier.adapters.repository import SqlUnitOfWork
from notifier.adapters.tables import processed_events
from notifier.entrypoints.events import inventory_event_handlers, order_event_handlers
from notifier.entrypoints.grpc_api import NotifierServicer
from notifier.service_layer.notifications import Notifications

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    env = Env()
    database = open_database(
        env.text("NOTIFIER_DATABASE_URL", default_url(settings.data_dir)),
        variable="NOTIFIER_DATABASE_URL",
    )
    database.migrate(MIGRATIONS)
    broadcaster = Broadcaster()
    notifications = Notifications(SqlUnitOfWork(database), broadcaster)
    orders_topic = declare_topic(app, settings, ORDERS_TOPIC)
    inventory_topic = declare_topic(app, settings, INVENTORY_TOPIC)
    orders_dlq = subscribe(app, settings, orders_topic, order_event_handlers(notifications))
    inventory_dlq = subscribe(
        app, settings, inventory_topic, inventory_event_handlers(notifications)
    )
    servicer = NotifierServicer(notifications, broadcaster)

    def register(server: grpc.aio.Server) -> None:
        notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name],
        grpc_registrars=[register],
        topics=[orders_topic, inventory_topic, orders_dlq, inventory_dlq],
        background=[
            DatabaseLifecycle(database),
            Pruner(database, settings.retention, processed_events=processed_events),
        ],
        on_grpc_stopping=[broadcaster.close],
    )
