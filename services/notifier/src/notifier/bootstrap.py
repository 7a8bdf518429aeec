"""Wires the notifier service: its gRPC API and the topics it consumes."""

from __future__ import annotations

import grpc
from shop.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from shop_chassis.kafka import INVENTORY_TOPIC, ORDERS_TOPIC, ShopApp, declare_topic
from shop_chassis.service import ServiceParts
from shop_chassis.settings import ServiceSettings

from notifier.entrypoints.grpc_api import NotifierServicer


def wire(settings: ServiceSettings, app: ShopApp) -> ServiceParts:
    servicer = NotifierServicer()

    def register(server: grpc.aio.Server) -> None:
        notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)

    return ServiceParts(
        grpc_service_names=[notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name],
        grpc_registrars=[register],
        topics=[
            declare_topic(app, settings, ORDERS_TOPIC),
            declare_topic(app, settings, INVENTORY_TOPIC),
        ],
    )
